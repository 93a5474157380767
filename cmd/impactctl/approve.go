package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// renderPending says that a publish awaits approvals, and how to give them.
func renderPending(w io.Writer, r *impactv1.PublishRequest) error {
	need := int(r.GetApprovalsRequired()) - 1 - len(r.GetApprovedBy())
	fmt.Fprintf(w, "publish of %s v%d (over v%d, accepting %d corrections) requested by %s: %d more approval(s) needed from another admin, before %s\n",
		r.GetIncidentId(), r.GetVersion(), r.GetExpectedVisibleVersion(), r.GetAcceptCorrections(), r.GetRequestedBy(), need, timestamp(r.GetExpiresAt()))
	_, err := fmt.Fprintf(w, "approve: impactctl snapshot approve --incident %s --version %d\n", r.GetIncidentId(), r.GetVersion())
	return err
}

func (a *app) approveCommand() *cobra.Command {
	var incident string
	var version uint32
	cmd := &cobra.Command{
		Use:   "approve --incident ID --version N",
		Short: "Approve another admin's pending publish request (impactd --publish-approvals 2 or more)",
		Long: `Approve approves the pending request to publish version N. The requester
cannot approve their own request. The last approval needed publishes: the
compare-and-set on the visible version the requester expected, with the
corrections counted again then (refused if there are more than the requester
accepted). A request lapses when the visible version moves or when it
expires (impactd --approval-ttl); 'impactctl snapshot requests' lists them.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.snapshots()
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd.Context())
			defer cancel()
			resp, err := c.ApprovePublish(ctx, &impactv1.ApprovePublishRequest{IncidentId: incident, Version: version})
			if err != nil {
				return correctionsRefused(err, incident, version, 0, "request the publish again")
			}
			if a.jsonOut {
				return a.printProto(resp)
			}
			if s := resp.GetSnapshot(); s != nil {
				fmt.Fprintf(a.stdout, "approved and published %s v%d (visible was %s; requested by %s, approved by %s)\n",
					s.GetIncidentId(), s.GetVersion(), versionName(resp.GetPreviousVisibleVersion()),
					resp.GetRequest().GetRequestedBy(), strings.Join(resp.GetRequest().GetApprovedBy(), ", "))
				return renderSnapshotInfo(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "approved; ")
			return renderPending(a.stdout, resp.GetRequest())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.Uint32Var(&version, "version", 0, "the version whose publish to approve (required)")
	markRequired(cmd, "incident", "version")
	return cmd
}

func (a *app) requestsCommand() *cobra.Command {
	var incident string
	cmd := &cobra.Command{
		Use:   "requests --incident ID",
		Short: "List the publish requests waiting for approval",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.snapshots()
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd.Context())
			defer cancel()
			resp, err := c.ListPublishRequests(ctx, &impactv1.ListPublishRequestsRequest{IncidentId: incident})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printProto(resp)
			}
			if len(resp.GetRequests()) == 0 {
				_, err := fmt.Fprintln(a.stdout, "no publish requests")
				return err
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "VERSION\tOVER\tCORRECTIONS\tREQUESTED BY\tAT\tAPPROVED BY\tNEEDED\tSTATE\tEXPIRES")
			for _, r := range resp.GetRequests() {
				approved := strings.Join(r.GetApprovedBy(), ",")
				if approved == "" {
					approved = "-"
				}
				state := strings.ToLower(r.GetState().String())
				fmt.Fprintf(tw, "v%d\tv%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.GetVersion(), r.GetExpectedVisibleVersion(), num(r.GetAcceptCorrections()),
					r.GetRequestedBy(), timestamp(r.GetRequestedAt()), approved, r.GetApprovalsRequired()-1, state, timestamp(r.GetExpiresAt()))
			}
			return tw.Flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	markRequired(cmd, "incident")
	return cmd
}
