package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// auditPage is the page size impactctl audit reads the trail with.
const auditPage = 1000

func (a *app) auditCommand() *cobra.Command {
	var incident string
	var limit int
	var after uint64
	cmd := &cobra.Command{
		Use:   "audit [--incident ID] [--limit N] [--after SEQ]",
		Short: "Show the audit trail: who uploaded, published, rolled back, collected, claimed, erased, and when (impact.admin)",
		Long: `Audit prints the audit trail, oldest first: every ops action (upload,
publish, rollback, gc, claim_wave, restore, erase) and every practice call
(practice_impact, practice_check: the practice and how many ids were checked
and found) with its number, time, actor (the operator's, or the practice
user's, token subject), incident, version, digest, outcome and a short
detail. Erasures and practice checks name no subject. --limit shows the newest N events (0: all);
--after shows only events numbered after SEQ.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageError("--limit must not be negative")
			}
			resp, err := a.readAudit(cmd.Context(), incident, after, limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printProto(resp)
			}
			return renderAudit(a.stdout, resp.GetEvents())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "only this incident's events (default: every incident's, and erasures)")
	f.IntVar(&limit, "limit", 50, "show the newest N events, 0 for all")
	f.Uint64Var(&after, "after", 0, "only events numbered after SEQ")
	return cmd
}

// readAudit reads the trail after after, page by page, and keeps the newest
// limit events (all if limit is 0).
func (a *app) readAudit(ctx context.Context, incident string, after uint64, limit int) (*impactv1.ListAuditEventsResponse, error) {
	c, err := a.snapshots()
	if err != nil {
		return nil, err
	}
	out := &impactv1.ListAuditEventsResponse{NextAfterSeq: after}
	for {
		cctx, cancel := a.callCtx(ctx)
		resp, err := c.ListAuditEvents(cctx, &impactv1.ListAuditEventsRequest{IncidentId: incident, AfterSeq: out.NextAfterSeq, PageSize: auditPage})
		cancel()
		if err != nil {
			return nil, err
		}
		out.Events = append(out.Events, resp.GetEvents()...)
		if limit > 0 && len(out.Events) > limit {
			out.Events = append(out.Events[:0], out.Events[len(out.Events)-limit:]...)
		}
		out.NextAfterSeq = resp.GetNextAfterSeq()
		if len(resp.GetEvents()) < auditPage {
			return out, nil
		}
	}
}

func renderAudit(w io.Writer, events []*impactv1.AuditEvent) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "no audit events")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tINCIDENT\tVERSION\tDIGEST\tOUTCOME\tDETAIL")
	for _, e := range events {
		version := "-"
		if e.GetVersion() != 0 {
			version = fmt.Sprintf("v%d", e.GetVersion())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetSeq(), timestamp(e.GetTime()), dash(e.GetActor()),
			e.GetAction(), dash(e.GetIncidentId()), version, shortDigest(e.GetDigest()), dash(e.GetOutcome()), oneLine(dash(e.GetDetail())))
	}
	return tw.Flush()
}
