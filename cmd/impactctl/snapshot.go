package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// uploadChunkSize is the size of the roster chunks of an upload.
const uploadChunkSize = 64 << 10

func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Upload, inspect, publish, roll back and garbage-collect snapshot versions (impact.admin)",
	}
	cmd.AddCommand(a.uploadCommand(), a.listCommand(), a.diffCommand(), a.publishCommand(), a.rollbackCommand(), a.gcCommand(),
		a.approveCommand(), a.requestsCommand())
	return cmd
}

func (a *app) uploadCommand() *cobra.Command {
	var incident, specFile, rosterFile string
	cmd := &cobra.Command{
		Use:   "upload --incident ID --spec FILE --roster FILE",
		Short: "Stage a new version from an incident spec and a roster CSV",
		Long: `Upload streams the incident spec (YAML or JSON) and the roster CSV to impactd,
which parses, validates and loads them whole as a new staged version,
invisible to patients until published. Any invalid row rejects the whole
upload: the violations (row, field, rule) are printed to stderr.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.upload(cmd.Context(), incident, specFile, rosterFile)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.StringVar(&specFile, "spec", "", "incident spec file, YAML or JSON (required)")
	f.StringVar(&rosterFile, "roster", "", "roster CSV file (required)")
	markRequired(cmd, "incident", "spec", "roster")
	cmd.MarkFlagFilename("spec", "yaml", "yml", "json")
	cmd.MarkFlagFilename("roster", "csv")
	return cmd
}

func (a *app) upload(ctx context.Context, incident, specFile, rosterFile string) error {
	spec, err := os.ReadFile(specFile)
	if err != nil {
		return err
	}
	roster, err := os.Open(rosterFile)
	if err != nil {
		return err
	}
	defer roster.Close()
	fi, err := roster.Stat()
	if err != nil {
		return err
	}
	c, err := a.snapshots()
	if err != nil {
		return err
	}
	sctx, cancel := a.streamCtx(ctx)
	defer cancel()
	p := a.newProgress(fi.Size(), "uploading roster", true)
	var sent int64
	resp, err := uploadStream(sctx, c, incident, spec, roster, func(n int) {
		p.add(n)
		if sent += int64(n); sent == fi.Size() {
			p.note("roster sent; impactd is validating and staging it")
		}
	})
	p.done()
	if err != nil {
		a.details = violations(err)
		return err
	}
	if a.jsonOut {
		return a.printProto(resp)
	}
	s := resp.GetSnapshot()
	fmt.Fprintf(a.stdout, "staged %s v%d\n", s.GetIncidentId(), s.GetVersion())
	renderSnapshotInfo(a.stdout, s)
	// Next steps, copy-paste ready when the visible version can be read.
	lctx, lcancel := a.callCtx(ctx)
	defer lcancel()
	next := fmt.Sprintf("\npublish: impactctl snapshot publish --incident %s --version %d\n", s.GetIncidentId(), s.GetVersion())
	if l, err := c.ListSnapshots(lctx, &impactv1.ListSnapshotsRequest{IncidentId: incident}); err == nil && l.GetVisibleVersion() > 0 {
		v := l.GetVisibleVersion()
		next = fmt.Sprintf("\nreview:  impactctl snapshot diff --incident %[1]s --version %[2]d --against %[3]d\npublish: impactctl snapshot publish --incident %[1]s --version %[2]d --expect %[3]d\n",
			s.GetIncidentId(), s.GetVersion(), v)
	}
	_, err = io.WriteString(a.stdout, next)
	return err
}

// uploadStream sends the header, then the roster in chunks of
// uploadChunkSize bytes, reporting each chunk's size to sent.
func uploadStream(ctx context.Context, c impactv1.SnapshotServiceClient, incident string, spec []byte, roster io.Reader, sent func(int)) (*impactv1.UploadSnapshotResponse, error) {
	stream, err := c.UploadSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	header := &impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{
		Header: &impactv1.UploadHeader{IncidentId: incident, Spec: spec},
	}}
	if err := stream.Send(header); err != nil {
		// io.EOF: the server ended the stream; its status comes from
		// CloseAndRecv.
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		return stream.CloseAndRecv()
	}
	buf := make([]byte, uploadChunkSize)
	for {
		n, rerr := io.ReadFull(roster, buf)
		if n > 0 {
			// Send marshals the message before it returns: buf can be reused.
			chunk := &impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_RosterChunk{RosterChunk: buf[:n]}}
			if err := stream.Send(chunk); err != nil {
				if !errors.Is(err, io.EOF) {
					return nil, err
				}
				return stream.CloseAndRecv()
			}
			sent(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read roster: %w", rerr)
		}
	}
	return stream.CloseAndRecv()
}

func (a *app) listCommand() *cobra.Command {
	var incident string
	cmd := &cobra.Command{
		Use:   "list --incident ID",
		Short: "List an incident's versions, newest first",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
				func(ctx context.Context, c impactv1.SnapshotServiceClient) (*impactv1.ListSnapshotsResponse, error) {
					return c.ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: incident})
				},
				func(resp *impactv1.ListSnapshotsResponse) error { return renderSnapshotList(a.stdout, incident, resp) })
		}),
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	markRequired(cmd, "incident")
	return cmd
}

func (a *app) diffCommand() *cobra.Command {
	var incident string
	var version, against uint32
	cmd := &cobra.Command{
		Use:   "diff --incident ID --version N --against M",
		Short: "Compare two versions: subjects added, removed, changed, per cohort",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
				func(ctx context.Context, c impactv1.SnapshotServiceClient) (*impactv1.DiffSnapshotsResponse, error) {
					return c.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: incident, Version: version, Against: against})
				},
				func(resp *impactv1.DiffSnapshotsResponse) error {
					if err := renderNotifiedChanges(a.stdout, resp); err != nil {
						return err
					}
					return renderDiff(a.stdout, resp)
				})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.Uint32Var(&version, "version", 0, "the version to describe (required)")
	f.Uint32Var(&against, "against", 0, "the version to compare it with, usually the visible one (required)")
	markRequired(cmd, "incident", "version", "against")
	return cmd
}

func (a *app) publishCommand() *cobra.Command {
	var incident string
	var version, expect, accept uint32
	cmd := &cobra.Command{
		Use:   "publish --incident ID --version N [--expect M] [--accept-corrections K]",
		Short: "Make a staged version visible (compare-and-set on the visible version)",
		Long: `Publish makes a staged version visible to patients in one atomic step, on
condition that the visible version is still the one expected (--expect M, 0
for none). Without --expect, the visible version is read first and expected:
the publish still fails if another operator publishes in between.

A publish that would change the status of patients already notified is
refused unless --accept-corrections is at least their number, counted when
the publish runs; 'impactctl snapshot diff' says what that number is.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return publishVisible(a, cmd, incident, version, expect,
				func(ctx context.Context, c impactv1.SnapshotServiceClient, exp uint32) (*impactv1.PublishSnapshotResponse, error) {
					return c.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{
						IncidentId: incident, Version: version, ExpectedVisibleVersion: proto.Uint32(exp), AcceptCorrections: accept,
					})
				},
				func(*impactv1.PublishRequest) string { return "" },
				func(resp *impactv1.PublishSnapshotResponse) string {
					s := resp.GetSnapshot()
					return fmt.Sprintf("published %s v%d (visible was %s)\n", s.GetIncidentId(), s.GetVersion(), versionName(resp.GetPreviousVisibleVersion()))
				})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.Uint32Var(&version, "version", 0, "the staged version to publish (required)")
	f.Uint32Var(&expect, "expect", 0, "the visible version expected, 0 for none (default: the one visible now)")
	f.Uint32Var(&accept, "accept-corrections", 0, "how many already-notified patients the publish may correct (see snapshot diff)")
	markRequired(cmd, "incident", "version")
	return cmd
}

func (a *app) rollbackCommand() *cobra.Command {
	var incident string
	var to, expect, accept uint32
	cmd := &cobra.Command{
		Use:   "rollback --incident ID --to N [--expect M] [--accept-corrections K]",
		Short: "Publish an older version's content again, as a new version",
		Long: `Rollback stages a new version with the content of version N and publishes it,
so visible versions only move forward. Like publish, it is a compare-and-set
on the visible version (--expect, default: the one visible now), and it is
refused, like publish, when it would correct more already-notified patients
than --accept-corrections ('impactctl snapshot diff --version N' counts them).`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return publishVisible(a, cmd, incident, to, expect,
				func(ctx context.Context, c impactv1.SnapshotServiceClient, exp uint32) (*impactv1.RollbackSnapshotResponse, error) {
					return c.RollbackSnapshot(ctx, &impactv1.RollbackSnapshotRequest{
						IncidentId: incident, ToVersion: to, ExpectedVisibleVersion: proto.Uint32(exp), AcceptCorrections: accept,
					})
				},
				func(p *impactv1.PublishRequest) string {
					return fmt.Sprintf("staged the content of v%d as v%d; ", to, p.GetVersion())
				},
				func(resp *impactv1.RollbackSnapshotResponse) string {
					s := resp.GetSnapshot()
					return fmt.Sprintf("rolled back %s to the content of v%d: published as v%d (visible was %s)\n",
						s.GetIncidentId(), to, s.GetVersion(), versionName(resp.GetPreviousVisibleVersion()))
				})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&incident, "incident", "", "incident id (required)")
	f.Uint32Var(&to, "to", 0, "the older version whose content to publish again (required)")
	f.Uint32Var(&expect, "expect", 0, "the visible version expected, 0 for none (default: the one visible now)")
	f.Uint32Var(&accept, "accept-corrections", 0, "how many already-notified patients the rollback may correct (see snapshot diff)")
	markRequired(cmd, "incident", "to")
	return cmd
}

// publishAnswer is what a publish or a rollback answers: the version made
// visible, or the request still waiting for approvals.
type publishAnswer interface {
	proto.Message
	GetPending() *impactv1.PublishRequest
	GetSnapshot() *impactv1.SnapshotInfo
	GetPreviousVisibleVersion() uint32
}

// publishVisible runs a publish or a rollback of version: the
// compare-and-set call on the visible version expected (--expect, else the
// one visible now), a refusal for uncounted corrections explained; then,
// unless --json, the pending request after pendingLead's words, or done's
// line and the version now visible.
func publishVisible[R publishAnswer](a *app, cmd *cobra.Command, incident string, version, expect uint32,
	call func(ctx context.Context, c impactv1.SnapshotServiceClient, exp uint32) (R, error),
	pendingLead func(*impactv1.PublishRequest) string, done func(R) string) error {
	exp, err := a.expected(cmd, incident, expect)
	if err != nil {
		return err
	}
	return callAndRender(a, cmd, impactv1.NewSnapshotServiceClient,
		func(ctx context.Context, c impactv1.SnapshotServiceClient) (R, error) {
			resp, err := call(ctx, c, exp)
			if err != nil {
				return resp, correctionsRefused(err, incident, version, exp, "re-run")
			}
			return resp, nil
		},
		func(resp R) error {
			if p := resp.GetPending(); p != nil {
				fmt.Fprint(a.stdout, pendingLead(p))
				return renderPending(a.stdout, p)
			}
			fmt.Fprint(a.stdout, done(resp))
			return renderSnapshotInfo(a.stdout, resp.GetSnapshot())
		})
}

// expected returns the visible version a publish or rollback expects:
// --expect when given, else the one ListSnapshots reports now.
func (a *app) expected(cmd *cobra.Command, incident string, expect uint32) (uint32, error) {
	if cmd.Flags().Changed("expect") {
		return expect, nil
	}
	c, err := a.snapshots()
	if err != nil {
		return 0, err
	}
	ctx, cancel := a.callCtx(cmd.Context())
	defer cancel()
	resp, err := c.ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: incident})
	if err != nil {
		return 0, fmt.Errorf("read the visible version: %w", err)
	}
	return resp.GetVisibleVersion(), nil
}

// versionName renders a version number, "none" for 0.
func versionName(v uint32) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("v%d", v)
}

// markRequired marks flags required (cobra validates them before the
// command runs).
func markRequired(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err)
		}
	}
}
