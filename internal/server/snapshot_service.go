package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// snapshotService serves operators with the impact.admin scope.
type snapshotService struct {
	impactv1.UnimplementedSnapshotServiceServer
	snapshots *snapshot.Service
	catalog   *snapshot.Catalog
	audit     *audit.Recorder
	uploadDir string
	maxUpload int64
	metrics   *telemetry.Metrics // nil: none
}

func actor(ctx context.Context) string {
	p, _ := principalFrom(ctx)
	return p.Subject
}

// UploadSnapshot spools the roster to a private temporary file (so the
// server never holds a whole roster in memory, and the domain can validate
// it whole before staging anything), then stages it. The spool holds raw
// subject ids, so it is unlinked as soon as it is created: nothing raw is
// reachable at rest while the upload runs, and the kernel frees the file
// when its descriptor closes, which a crash or SIGKILL of impactd does too.
func (s *snapshotService) UploadSnapshot(stream impactv1.SnapshotService_UploadSnapshotServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return fmt.Errorf("%w: the first message must be the header", errInvalidStream)
	}
	f, err := openSpool(s.uploadDir)
	if err != nil {
		return fmt.Errorf("spool upload: %w", err)
	}
	defer func() { _ = f.Close() }()
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		chunk := msg.GetRosterChunk()
		if msg.GetHeader() != nil {
			return fmt.Errorf("%w: only the first message may be a header", errInvalidStream)
		}
		if n += int64(len(chunk)); n > s.maxUpload {
			return fmt.Errorf("%w: roster larger than %d bytes", errTooLarge, s.maxUpload)
		}
		if _, err := f.Write(chunk); err != nil {
			return fmt.Errorf("spool upload: %w", err)
		}
	}
	info, err := s.snapshots.Upload(ctx, snapshot.UploadRequest{
		Incident: hdr.GetIncidentId(),
		Spec:     hdr.GetSpec(),
		Roster:   func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(f, 0, n)), nil },
		Actor:    actor(ctx),
	})
	if err != nil {
		return err
	}
	return stream.SendAndClose(&impactv1.UploadSnapshotResponse{Snapshot: s.infoPB(ctx, info, 0)})
}

func (s *snapshotService) ListSnapshots(ctx context.Context, req *impactv1.ListSnapshotsRequest) (*impactv1.ListSnapshotsResponse, error) {
	head, infos, err := s.snapshots.List(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	out := &impactv1.ListSnapshotsResponse{VisibleVersion: uint32(head.Visible)}
	for _, in := range infos {
		out.Snapshots = append(out.Snapshots, s.infoPB(ctx, in, head.Visible))
	}
	return out, nil
}

func (s *snapshotService) DiffSnapshots(ctx context.Context, req *impactv1.DiffSnapshotsRequest) (*impactv1.DiffSnapshotsResponse, error) {
	d, err := s.snapshots.Diff(ctx, req.GetIncidentId(), uint64(req.GetVersion()), uint64(req.GetAgainst()))
	if err != nil {
		return nil, err
	}
	out := &impactv1.DiffSnapshotsResponse{
		IncidentId: req.GetIncidentId(), Version: req.GetVersion(), Against: req.GetAgainst(),
		Added: uint32(d.Added), Removed: uint32(d.Removed), Changed: uint32(d.Changed), SpecChanged: d.SpecChanged,
	}
	for _, c := range d.Cohorts {
		out.Cohorts = append(out.Cohorts, &impactv1.CohortDiff{CohortId: c.ID, Added: uint32(c.Added), Removed: uint32(c.Removed), Members: uint32(c.Members)})
	}
	for k, n := range d.Transitions {
		out.Transitions = append(out.Transitions, &impactv1.StatusTransition{From: statusPB(k[0]), To: statusPB(k[1]), Count: uint32(n)})
	}
	sortTransitions(out.Transitions)
	nc, err := s.snapshots.Corrections(ctx, req.GetIncidentId(), uint64(req.GetVersion()))
	if err != nil {
		return nil, err
	}
	out.NotifiedChanges = notifiedChangesPB(nc)
	return out, nil
}

func sortTransitions(ts []*impactv1.StatusTransition) {
	sort.Slice(ts, func(i, j int) bool {
		a, b := ts[i], ts[j]
		return a.From < b.From || a.From == b.From && a.To < b.To
	})
}

// moveVisible runs a call that moves the visible version, Publish or
// Rollback (same signature), measured as a publish. The validation table
// has checked the incident id and that the expected visible version is set.
func (s *snapshotService) moveVisible(ctx context.Context,
	move moveFunc,
	incident string, version, expected uint32,
) (*impactv1.SnapshotInfo, uint32, error) {
	start := time.Now()
	info, prev, err := move(ctx, incident, uint64(version), uint64(expected), actor(ctx))
	s.metrics.Publish(ctx, incident, time.Since(start), info.Counts.Entries, err)
	if err != nil {
		return nil, 0, err
	}
	return s.infoPB(ctx, info, info.Version), uint32(prev), nil
}

func (s *snapshotService) PublishSnapshot(ctx context.Context, req *impactv1.PublishSnapshotRequest) (*impactv1.PublishSnapshotResponse, error) {
	if s.snapshots.ApprovalsRequired() > 1 {
		return s.requestPublish(ctx, req)
	}
	info, prev, err := s.moveVisible(ctx, s.reviewedPublish(req.GetAcceptCorrections()), req.GetIncidentId(), req.GetVersion(), req.GetExpectedVisibleVersion())
	if err != nil {
		return nil, err
	}
	return &impactv1.PublishSnapshotResponse{Snapshot: info, PreviousVisibleVersion: prev}, nil
}

func (s *snapshotService) RollbackSnapshot(ctx context.Context, req *impactv1.RollbackSnapshotRequest) (*impactv1.RollbackSnapshotResponse, error) {
	if s.snapshots.ApprovalsRequired() > 1 {
		return s.requestRollback(ctx, req)
	}
	info, prev, err := s.moveVisible(ctx, s.reviewedRollback(req.GetAcceptCorrections()), req.GetIncidentId(), req.GetToVersion(), req.GetExpectedVisibleVersion())
	if err != nil {
		return nil, err
	}
	return &impactv1.RollbackSnapshotResponse{Snapshot: info, PreviousVisibleVersion: prev}, nil
}

// infoPB converts a version's info; cohort ids come from its spec (cached).
func (s *snapshotService) infoPB(ctx context.Context, in store.VersionInfo, visible uint64) *impactv1.SnapshotInfo {
	out := &impactv1.SnapshotInfo{
		IncidentId:  in.Incident,
		Version:     uint32(in.Version),
		State:       statePB(in.State),
		Visible:     in.Version == visible && visible != 0,
		Entries:     uint32(in.Counts.Entries),
		Affected:    uint32(in.Counts.Affected),
		UnderReview: uint32(in.Counts.UnderReview),
		CreatedBy:   in.CreatedBy,
		CreatedAt:   timePB(in.CreatedAt),
		PublishedBy: in.PublishedBy,
		PublishedAt: timePB(in.PublishedAt),
		Source:      in.Source,
	}
	if in.State == store.StateStaged || in.State == store.StatePublished {
		out.Digest = in.Digest.String()
		if v, err := s.catalog.Get(ctx, in.Incident, in.Version); err == nil {
			for i, c := range v.Spec.Cohorts {
				cc := &impactv1.CohortCount{CohortId: c.ID}
				if i < len(in.Counts.PerCohort) {
					cc.Affected, cc.UnderReview = uint32(in.Counts.PerCohort[i][0]), uint32(in.Counts.PerCohort[i][1])
				}
				out.Cohorts = append(out.Cohorts, cc)
			}
		}
	}
	return out
}

// GcSnapshots removes the versions no one can need any more (see
// snapshot.Service.GC); the caller is recorded as the actor.
func (s *snapshotService) GcSnapshots(ctx context.Context, req *impactv1.GcSnapshotsRequest) (*impactv1.GcSnapshotsResponse, error) {
	removed, kept, err := s.snapshots.GC(ctx, req.GetIncidentId(), int(req.GetKeepLast()), actor(ctx))
	if err != nil {
		return nil, err
	}
	return &impactv1.GcSnapshotsResponse{IncidentId: req.GetIncidentId(), Removed: versionsPB(removed), Kept: versionsPB(kept)}, nil
}

// defaultAuditPage is the page size of ListAuditEvents when none is asked.
const defaultAuditPage = 100

// ListAuditEvents reads the audit trail, oldest first, a page at a time.
func (s *snapshotService) ListAuditEvents(ctx context.Context, req *impactv1.ListAuditEventsRequest) (*impactv1.ListAuditEventsResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultAuditPage
	}
	size = store.AuditLimit(size)
	es, err := s.audit.List(ctx, req.GetIncidentId(), req.GetAfterSeq(), size)
	if err != nil {
		return nil, err
	}
	out := &impactv1.ListAuditEventsResponse{Events: make([]*impactv1.AuditEvent, len(es)), NextAfterSeq: req.GetAfterSeq()}
	for i, e := range es {
		out.Events[i] = auditEventPB(e)
		out.NextAfterSeq = e.Seq
	}
	return out, nil
}
