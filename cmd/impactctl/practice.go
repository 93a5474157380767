package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) practiceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "practice",
		Short: "Per-practice view of an incident: who is affected, notified, due (impact.admin)",
	}
	cmd.AddCommand(a.practiceStatsCommand(), a.practiceListCommand())
	return cmd
}

// practiceSorts are the columns practice stats sorts by.
var practiceSorts = []string{"practice", "affected", "under_review", "notified", "due"}

func (a *app) practiceTable(cmd *cobra.Command, incident string) (*impactv1.GetPracticeStatsResponse, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.callCtx(cmd.Context())
	defer cancel()
	return impactv1.NewPracticeStatsServiceClient(conn).GetPracticeStats(ctx, &impactv1.GetPracticeStatsRequest{IncidentId: incident})
}

func (a *app) practiceStatsCommand() *cobra.Command {
	var incident, by string
	cmd := &cobra.Command{
		Use:   "stats --incident ID [--sort practice|affected|under_review|notified|due]",
		Short: "Show, per practice, its affected and under-review patients, how many were notified and how many are due",
		Long: `Stats prints one row per practice of the visible version's roster (and per
practice with a patient notified as its own who is now owed a correction):
affected, under review, notified at their current status, due (corrections
included). --sort orders by a column, largest first (by practice id, A to Z,
by default). The notified and due counts are recounted from the ledger at
most every few seconds; the answer says when.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(practiceSorts, by) {
				return usageError("--sort must be one of " + strings.Join(practiceSorts, ", "))
			}
			resp, err := a.practiceTable(cmd, incident)
			if err != nil {
				return err
			}
			sortPractices(resp.GetPractices(), by)
			if a.jsonOut {
				return a.printProto(resp)
			}
			return renderPracticeStats(a.stdout, resp)
		}),
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	cmd.Flags().StringVar(&by, "sort", "practice", "sort by "+strings.Join(practiceSorts, ", "))
	markRequired(cmd, "incident")
	return cmd
}

func (a *app) practiceListCommand() *cobra.Command {
	var incident string
	cmd := &cobra.Command{
		Use:   "list --incident ID",
		Short: "List the affected practices (at least one patient affected or under review), by practice id",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			resp, err := a.practiceTable(cmd, incident)
			if err != nil {
				return err
			}
			kept := resp.GetPractices()[:0]
			for _, p := range resp.GetPractices() {
				if p.GetAffected()+p.GetUnderReview() > 0 {
					kept = append(kept, p)
				}
			}
			resp.Practices = kept
			if a.jsonOut {
				return a.printProto(resp)
			}
			if len(kept) == 0 {
				_, err := fmt.Fprintln(a.stdout, "no affected practice")
				return err
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "PRACTICE\tAFFECTED\tUNDER REVIEW")
			for _, p := range kept {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", p.GetPracticeId(), p.GetAffected(), p.GetUnderReview())
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	markRequired(cmd, "incident")
	return cmd
}

func sortPractices(ps []*impactv1.PracticeStats, by string) {
	key := func(p *impactv1.PracticeStats) uint32 {
		switch by {
		case "affected":
			return p.GetAffected()
		case "under_review":
			return p.GetUnderReview()
		case "notified":
			return p.GetNotified()
		case "due":
			return p.GetDue()
		}
		return 0
	}
	slices.SortStableFunc(ps, func(x, y *impactv1.PracticeStats) int {
		if kx, ky := key(x), key(y); kx != ky {
			if kx > ky {
				return -1
			}
			return 1
		}
		return strings.Compare(x.GetPracticeId(), y.GetPracticeId())
	})
}

func renderPracticeStats(w io.Writer, r *impactv1.GetPracticeStatsResponse) error {
	fmt.Fprintf(w, "incident %s, visible v%d, counted %s\n", r.GetIncidentId(), r.GetVisibleVersion(), timestamp(r.GetCountedAt()))
	tw := newTable(w)
	fmt.Fprintln(tw, "PRACTICE\tAFFECTED\tUNDER REVIEW\tNOTIFIED\tDUE\tCORRECTIONS DUE")
	for _, p := range r.GetPractices() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", p.GetPracticeId(), p.GetAffected(), p.GetUnderReview(), p.GetNotified(), p.GetDue(), p.GetCorrectionsDue())
	}
	return tw.Flush()
}
