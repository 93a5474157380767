package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) noticeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notice",
		Short: "Claim notices for the email pipeline and follow progress (impact.notify)",
	}
	cmd.AddCommand(a.claimCommand(), a.statsCommand(), a.restoreCommand(), a.verifyCommand())
	cmd.AddCommand(a.mailRenderCommand(), a.sendCommand())
	return cmd
}

// claimFlags are the flags of notice claim.
type claimFlags struct {
	incident, subject, idemKey  string
	roster, cohort, out, waveID string
}

func (a *app) claimCommand() *cobra.Command {
	var f claimFlags
	cmd := &cobra.Command{
		Use:   "claim --incident ID (--subject S | --roster FILE [--cohort C] --out FILE)",
		Short: "Claim the notice of one subject, or of a whole wave",
		Long: `Claim asks Impact whether a notice is due and, if so, pins the subject to the
visible version and returns the notice rendered from it. Send only what a
claim answers SEND.

One subject: --subject S [--idempotency-key K] prints the answer.

A wave: --roster FILE [--cohort C] --out FILE claims every subject of the
roster CSV (only the subject_id column is needed, and cohorts with --cohort),
and writes one JSON line per notice to send to FILE (written to FILE.tmp,
fsynced, then renamed). The wave id (--wave-id, default derived from the
roster bytes and the cohort) makes each claim's idempotency key: re-running
the same wave returns the same answers and records nothing new. If a wave
fails midway, the notices claimed so far are kept in FILE.tmp; re-run it.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if f.roster == "" {
				for _, n := range []string{"cohort", "out", "wave-id"} {
					if cmd.Flags().Changed(n) {
						return usageError("--" + n + " needs --roster")
					}
				}
				return a.claimOne(cmd.Context(), f)
			}
			if cmd.Flags().Changed("idempotency-key") {
				return usageError("--idempotency-key is for one subject; a wave's keys come from --wave-id")
			}
			return a.claimWave(cmd.Context(), f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.incident, "incident", "", "incident id (required)")
	fl.StringVar(&f.subject, "subject", "", "claim one subject's notice")
	fl.StringVar(&f.idemKey, "idempotency-key", "", "idempotency key of a one-subject claim (default: random)")
	fl.StringVar(&f.roster, "roster", "", "claim a wave: every subject of this roster CSV")
	fl.StringVar(&f.cohort, "cohort", "", "wave: only the subjects in this cohort")
	fl.StringVar(&f.out, "out", "", "wave: the outbox, one JSON line per notice to send")
	fl.StringVar(&f.waveID, "wave-id", "", `wave: id making the idempotency keys (default "wave-" + 12 hex of sha256(roster + cohort))`)
	markRequired(cmd, "incident")
	cmd.MarkFlagsOneRequired("subject", "roster")
	cmd.MarkFlagsMutuallyExclusive("subject", "roster")
	cmd.MarkFlagsRequiredTogether("roster", "out")
	cmd.MarkFlagFilename("roster", "csv")
	cmd.MarkFlagFilename("out", "jsonl")
	return cmd
}

func (a *app) claimOne(ctx context.Context, f claimFlags) error {
	key := f.idemKey
	if key == "" {
		var b [16]byte
		rand.Read(b[:])
		key = "ctl-" + hex.EncodeToString(b[:])
	}
	c, err := a.notices()
	if err != nil {
		return err
	}
	ctx, cancel := a.callCtx(ctx)
	defer cancel()
	resp, err := c.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: f.incident, SubjectId: f.subject, IdempotencyKey: key})
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printProto(resp)
	}
	return renderClaim(a.stdout, resp.GetClaim())
}

// waveSummary is what a wave prints (as JSON with --json).
type waveSummary struct {
	WaveID     string `json:"wave_id"`
	IncidentID string `json:"incident_id"`
	Cohort     string `json:"cohort,omitempty"`
	Out        string `json:"out"`
	Rows       int    `json:"rows"`
	waveCounts
}

func (a *app) claimWave(ctx context.Context, f claimFlags) error {
	file, err := os.Open(f.roster)
	if err != nil {
		return err
	}
	defer file.Close()
	rows, digestID, err := scanWave(file, f.cohort)
	if err != nil {
		return err
	}
	if rows == 0 {
		if f.cohort != "" {
			return fmt.Errorf("no roster row is in cohort %q", f.cohort)
		}
		return errors.New("the roster has no rows")
	}
	waveID := digestID
	if f.waveID != "" {
		waveID = f.waveID
	}
	c, err := a.notices()
	if err != nil {
		return err
	}
	box, err := createOutbox(f.out)
	if err != nil {
		return err
	}
	ctx, cancel := a.streamCtx(ctx)
	defer cancel()
	p := a.newProgress(int64(rows), "claiming "+waveID, false)

	// The second pass re-hashes the roster: the wave must claim exactly the
	// rows its id was derived from.
	var again int
	d := newWaveDigest()
	subjects := func(yield func(string) error) error {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		err := rosterWalker{cohort: f.cohort}.walk(io.TeeReader(file, d), func(s string) error {
			again++
			return yield(s)
		})
		if err != nil {
			return err
		}
		io.Copy(d, file)
		return nil
	}
	counts, err := claimWave(ctx, c, f.incident, waveID, subjects, func(subject string, cl *impactv1.Claim) error {
		p.add(1)
		if cl.GetAction() == impactv1.ClaimAction_SEND {
			return box.add(subject, cl)
		}
		return nil
	})
	p.done()
	if err == nil && (again != rows || d.waveID(f.cohort) != digestID) {
		err = errors.New("the roster changed while the wave ran")
	}
	if err != nil {
		if box.n > 0 {
			if kerr := box.keep(); kerr != nil {
				return fmt.Errorf("%w; and %d claimed notices could not be saved: %v", err, box.n, kerr)
			}
			return fmt.Errorf("%w; %d claimed notices kept in %s.tmp, re-run the same command to finish the wave", err, box.n, f.out)
		}
		box.sync()
		os.Remove(f.out + ".tmp")
		return err
	}
	if err := box.commit(); err != nil {
		return err
	}
	sum := waveSummary{WaveID: waveID, IncidentID: f.incident, Cohort: f.cohort, Out: f.out, Rows: rows, waveCounts: counts}
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	return renderWave(a.stdout, sum)
}

// renderWave writes a wave's summary.
func renderWave(w io.Writer, s waveSummary) error {
	scope := "all cohorts"
	if s.Cohort != "" {
		scope = "cohort " + s.Cohort
	}
	fmt.Fprintf(w, "wave %s of %s (%s): %s claims\n", s.WaveID, s.IncidentID, scope, num(s.Rows))
	tw := newTable(w)
	fmt.Fprintf(tw, "  send\t%s\tnew notices, written to %s\n", num(s.Send), s.Out)
	if s.Replayed > 0 {
		fmt.Fprintf(tw, "  replayed\t%s\tclaimed by an earlier run of this wave: the same notice ids, written again so the outbox is whole (notice send skips those its journal shows accepted)\n", num(s.Replayed))
	}
	fmt.Fprintf(tw, "  already sent\t%s\tnotified before at this status\n", num(s.AlreadySent))
	fmt.Fprintf(tw, "  none\t%s\tnothing due\n", num(s.None))
	return tw.Flush()
}

func (a *app) statsCommand() *cobra.Command {
	var incident string
	cmd := &cobra.Command{
		Use:   "stats --incident ID",
		Short: "Show, per cohort, how many members were notified at their current status",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return callAndRender(a, cmd, impactv1.NewNoticeServiceClient,
				func(ctx context.Context, c impactv1.NoticeServiceClient) (*impactv1.GetNoticeStatsResponse, error) {
					return c.GetNoticeStats(ctx, &impactv1.GetNoticeStatsRequest{IncidentId: incident})
				},
				func(resp *impactv1.GetNoticeStatsResponse) error { return renderStats(a.stdout, resp) })
		}),
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	markRequired(cmd, "incident")
	return cmd
}
