package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/impact-health/impact/internal/demo"
)

// demoSummary is what demo prints (as JSON with --json).
type demoSummary struct {
	Incident           string         `json:"incident_id"`
	Spec               string         `json:"spec"`
	Roster             string         `json:"roster"`
	Rows               int            `json:"rows"`
	Affected           int            `json:"affected"`
	UnderReview        int            `json:"under_review"`
	Cohorts            map[string]int `json:"cohorts"`
	AffectedSubject    string         `json:"affected_subject"`
	UnderReviewSubject string         `json:"under_review_subject"`
	NotAffectedSubject string         `json:"not_affected_subject"`
}

func (a *app) demoCommand() *cobra.Command {
	var out string
	var opts demo.RosterOptions
	cmd := &cobra.Command{
		Use:   "demo [--out DIR] [--n 10000] [--seed 1] [--revision 2]",
		Short: "Write a synthetic incident spec and roster (DIR/spec.yaml, DIR/roster.csv)",
		Long: `Demo writes the spec of the December 2025 Health Documents breach (three
cohorts: northland, referrals, uploads) and a roster of N synthetic subjects,
the same for the same seed. Nothing in it is real patient data.

Without --out the files go to the demo directory of the dev data directory
(--data-dir, IMPACT_DATA_DIR; ./.impact-dev/demo by default), which git
ignores: generated files never land in the working tree by accident.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if opts.UnderReviewPercent == 0 {
				opts.UnderReviewPercent = -1 // none but the well-known subject
			}
			if out == "" {
				out = filepath.Join(a.dataDir, "demo")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			spec := filepath.Join(out, "spec.yaml")
			roster := filepath.Join(out, "roster.csv")
			if opts.Revision > 1 {
				roster = filepath.Join(out, fmt.Sprintf("roster-v%d.csv", opts.Revision))
			}
			if err := writeFile(spec, func(f *os.File) error { return demo.WriteSpec(f) }); err != nil {
				return err
			}
			var sum demo.Summary
			err := writeFile(roster, func(f *os.File) (err error) {
				sum, err = demo.WriteRoster(f, opts)
				return err
			})
			if err != nil {
				return err
			}
			s := demoSummary{
				Incident: demo.IncidentID, Spec: spec, Roster: roster,
				Rows: sum.Rows, Affected: sum.Affected, UnderReview: sum.UnderReview, Cohorts: sum.Cohorts,
				AffectedSubject: demo.AffectedSubject, UnderReviewSubject: demo.UnderReviewSubject,
				NotAffectedSubject: demo.NotAffectedSubject,
			}
			if a.jsonOut {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return renderDemo(a, s)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write spec.yaml and roster.csv into (default: DATA_DIR/demo, see --data-dir)")
	f.IntVar(&opts.N, "n", demo.DefaultN, "number of roster rows")
	f.Int64Var(&opts.Seed, "seed", 1, "random seed: the same seed gives the same roster")
	f.Float64Var(&opts.UnderReviewPercent, "under-review-percent", demo.DefaultUnderReviewPercent, "share of rows under review, in percent")
	f.IntVar(&opts.Revision, "revision", 1, "2 or more: a later revision of the same roster (corrections, moves, a cohort added), written to DIR/roster-vN.csv")
	cmd.MarkFlagDirname("out")
	return cmd
}

func renderDemo(a *app, s demoSummary) error {
	w := a.stdout
	fmt.Fprintf(w, "wrote %s and %s (incident %s)\n", s.Spec, s.Roster, s.Incident)
	fmt.Fprintf(w, "  %s subjects: %s affected, %s under review\n", num(s.Rows), num(s.Affected), num(s.UnderReview))
	tw := newTable(w)
	for _, c := range demo.Cohorts {
		fmt.Fprintf(tw, "  %s\t%s\n", c, num(s.Cohorts[c]))
	}
	for c, n := range s.Cohorts {
		if !slices.Contains(demo.Cohorts, c) {
			fmt.Fprintf(tw, "  %s\t%s\n", c, num(n))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndemo subjects:\n")
	tw = newTable(w)
	fmt.Fprintf(tw, "  affected (northland)\t%s\n", s.AffectedSubject)
	fmt.Fprintf(tw, "  under review\t%s\n", s.UnderReviewSubject)
	fmt.Fprintf(tw, "  not affected\t%s\n", s.NotAffectedSubject)
	tw.Flush()
	_, err := fmt.Fprintf(w, "\nnext: impactctl snapshot upload --incident %s --spec %s --roster %s\n", s.Incident, s.Spec, s.Roster)
	return err
}

// writeFile writes path through fn and closes it, reporting the first error.
func writeFile(path string, fn func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = fn(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
