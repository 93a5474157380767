package main

import (
	"context"
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

// renderApproved says what an approval did: published the version, or
// recorded the approval of a request that needs more.
func renderApproved(w io.Writer, resp *impactv1.ApprovePublishResponse) error {
	if s := resp.GetSnapshot(); s != nil {
		fmt.Fprintf(w, "approved and published %s v%d (visible was %s; requested by %s, approved by %s)\n",
			s.GetIncidentId(), s.GetVersion(), versionName(resp.GetPreviousVisibleVersion()),
			resp.GetRequest().GetRequestedBy(), strings.Join(resp.GetRequest().GetApprovedBy(), ", "))
		return renderSnapshotInfo(w, s)
	}
	fmt.Fprintf(w, "approved; ")
	return renderPending(w, resp.GetRequest())
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
			return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
				func(ctx context.Context, c impactv1.SnapshotServiceClient) (*impactv1.ApprovePublishResponse, error) {
					resp, err := c.ApprovePublish(ctx, &impactv1.ApprovePublishRequest{IncidentId: incident, Version: version})
					if err != nil {
						return nil, correctionsRefused(err, incident, version, 0, "request the publish again")
					}
					return resp, nil
				},
				func(resp *impactv1.ApprovePublishResponse) error { return renderApproved(a.stdout, resp) })
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
			return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
				func(ctx context.Context, c impactv1.SnapshotServiceClient) (*impactv1.ListPublishRequestsResponse, error) {
					return c.ListPublishRequests(ctx, &impactv1.ListPublishRequestsRequest{IncidentId: incident})
				},
				func(resp *impactv1.ListPublishRequestsResponse) error { return renderRequests(a.stdout, resp) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	markRequired(cmd, "incident")
	return cmd
}

// renderRequests lists the publish requests as a table.
func renderRequests(w io.Writer, resp *impactv1.ListPublishRequestsResponse) error {
	if len(resp.GetRequests()) == 0 {
		_, err := fmt.Fprintln(w, "no publish requests")
		return err
	}
	tw := newTable(w)
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
}
