package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) gcCommand() *cobra.Command {
	var incident string
	var keep uint32
	cmd := &cobra.Command{
		Use:   "gc --incident ID [--keep N]",
		Short: "Remove versions that are not visible, not among the newest N and not pinned",
		Long: `GC removes an incident's versions that no one can need any more: not the
visible version, not among the newest --keep versions (by number), not
referenced by any notified subject's pin, and not being loaded. A version a
notice was rendered from is never removed: the app keeps answering from it.
Removed version numbers are never used again.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
				func(ctx context.Context, c impactv1.SnapshotServiceClient) (*impactv1.GcSnapshotsResponse, error) {
					return c.GcSnapshots(ctx, &impactv1.GcSnapshotsRequest{IncidentId: incident, KeepLast: keep})
				},
				func(resp *impactv1.GcSnapshotsResponse) error { return renderGC(a.stdout, resp) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.Uint32Var(&keep, "keep", 3, "how many of the newest versions to keep")
	markRequired(cmd, "incident")
	return cmd
}

func renderGC(w io.Writer, r *impactv1.GcSnapshotsResponse) error {
	_, err := fmt.Fprintf(w, "%s: removed %s; kept %s\n", r.GetIncidentId(), versionList(r.GetRemoved()), versionList(r.GetKept()))
	return err
}

// versionList renders versions as "v1, v4", or "none".
func versionList(vs []uint32) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("v%d", v)
	}
	return strings.Join(parts, ", ")
}
