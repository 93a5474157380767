package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// statusService serves patients. The subject is the token's alone.
type statusService struct {
	impactv1.UnimplementedStatusServiceServer
	status  *istatus.Service
	metrics *telemetry.Metrics // nil: none
}

func (s *statusService) GetMyStatus(ctx context.Context, req *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, errPermissionDenied
	}
	a, err := s.status.Status(ctx, req.GetIncidentId(), p.Subject, uint64(req.GetAtLeastVersion()))
	if err != nil {
		return nil, err
	}
	s.metrics.Answer(ctx, a.Incident, a.Status, a.UpdatePending)
	return &impactv1.GetMyStatusResponse{Answer: answerPB(a)}, nil
}

func (s *statusService) ListMyStatuses(ctx context.Context, _ *impactv1.ListMyStatusesRequest) (*impactv1.ListMyStatusesResponse, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, errPermissionDenied
	}
	as, err := s.status.Statuses(ctx, p.Subject)
	if err != nil {
		return nil, err
	}
	out := &impactv1.ListMyStatusesResponse{Statuses: make([]*impactv1.StatusAnswer, len(as))}
	for i, a := range as {
		s.metrics.Answer(ctx, a.Incident, a.Status, a.UpdatePending)
		out.Statuses[i] = answerPB(a)
	}
	return out, nil
}

// statusFromPB is the store status of a request's status; the validation
// table has refused STATUS_UNSPECIFIED already.
func statusFromPB(s impactv1.Status) store.Status {
	switch s {
	case impactv1.Status_AFFECTED:
		return store.Affected
	case impactv1.Status_UNDER_REVIEW:
		return store.UnderReview
	}
	return store.NotAffected
}

func statusPB(s store.Status) impactv1.Status {
	switch s {
	case store.Affected:
		return impactv1.Status_AFFECTED
	case store.UnderReview:
		return impactv1.Status_UNDER_REVIEW
	}
	return impactv1.Status_NOT_AFFECTED
}

func timePB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func cohortsPB(cs []snapshot.Cohort) []*impactv1.Cohort {
	out := make([]*impactv1.Cohort, len(cs))
	for i, c := range cs {
		out[i] = &impactv1.Cohort{Id: c.ID, Title: c.Title, DataCategories: c.DataCategories}
	}
	return out
}

func noticePB(n istatus.Notice) *impactv1.Notice {
	return &impactv1.Notice{Subject: n.Subject, Body: n.Body, SupportContact: n.SupportContact}
}

func answerPB(a istatus.Answer) *impactv1.StatusAnswer {
	return &impactv1.StatusAnswer{
		IncidentId:      a.Incident,
		IncidentTitle:   a.IncidentTitle,
		Status:          statusPB(a.Status),
		Cohorts:         cohortsPB(a.Cohorts),
		Notice:          noticePB(a.Notice),
		Version:         uint32(a.Version),
		NotifiedVersion: uint32(a.NotifiedVersion),
		NotifiedAt:      timePB(a.NotifiedAt),
		NoticeId:        a.NoticeID,
		UpdatePending:   a.UpdatePending,
		VisibleStatus:   statusPB(a.VisibleStatus),
	}
}

// snapshotService serves operators with the impact.admin scope.
type snapshotService struct {
	impactv1.UnimplementedSnapshotServiceServer
	snapshots *snapshot.Service
	catalog   *snapshot.Catalog
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
// it whole before staging anything), then stages it.
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
	f, err := os.CreateTemp(s.uploadDir, "roster-*.csv")
	if err != nil {
		return fmt.Errorf("spool upload: %w", err)
	}
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
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
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool upload: %w", err)
	}
	info, err := s.snapshots.Upload(ctx, snapshot.UploadRequest{
		Incident: hdr.GetIncidentId(),
		Spec:     hdr.GetSpec(),
		Roster:   func() (io.ReadCloser, error) { return os.Open(f.Name()) },
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
	sort.Slice(out.Transitions, func(i, j int) bool {
		a, b := out.Transitions[i], out.Transitions[j]
		return a.From < b.From || a.From == b.From && a.To < b.To
	})
	return out, nil
}

// moveVisible runs a call that moves the visible version, Publish or
// Rollback (same signature), measured as a publish. The validation table
// has checked the incident id and that the expected visible version is set.
func (s *snapshotService) moveVisible(ctx context.Context,
	move func(ctx context.Context, incident string, version, expectVisible uint64, actor string) (store.VersionInfo, uint64, error),
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
	info, prev, err := s.moveVisible(ctx, s.snapshots.Publish, req.GetIncidentId(), req.GetVersion(), req.GetExpectedVisibleVersion())
	if err != nil {
		return nil, err
	}
	return &impactv1.PublishSnapshotResponse{Snapshot: info, PreviousVisibleVersion: prev}, nil
}

func (s *snapshotService) RollbackSnapshot(ctx context.Context, req *impactv1.RollbackSnapshotRequest) (*impactv1.RollbackSnapshotResponse, error) {
	info, prev, err := s.moveVisible(ctx, s.snapshots.Rollback, req.GetIncidentId(), req.GetToVersion(), req.GetExpectedVisibleVersion())
	if err != nil {
		return nil, err
	}
	return &impactv1.RollbackSnapshotResponse{Snapshot: info, PreviousVisibleVersion: prev}, nil
}

func statePB(s store.State) impactv1.SnapshotState {
	switch s {
	case store.StateStaging:
		return impactv1.SnapshotState_STAGING
	case store.StateStaged:
		return impactv1.SnapshotState_STAGED
	case store.StatePublished:
		return impactv1.SnapshotState_PUBLISHED
	case store.StateAborted:
		return impactv1.SnapshotState_ABORTED
	}
	return impactv1.SnapshotState_SNAPSHOT_STATE_UNSPECIFIED
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

// noticeService is the notification ledger, for the impact.notify scope.
type noticeService struct {
	impactv1.UnimplementedNoticeServiceServer
	status  *istatus.Service
	metrics *telemetry.Metrics // nil: none
}

// ClaimNotice decides and pins one subject's notice. Single claims are not
// recorded in the audit trail one by one (the pins are their record); a
// wave (ClaimNotices) is, as one event per incident.
func (s *noticeService) ClaimNotice(ctx context.Context, req *impactv1.ClaimNoticeRequest) (*impactv1.ClaimNoticeResponse, error) {
	c, err := s.status.Claim(ctx, req.GetIncidentId(), req.GetSubjectId(), req.GetIdempotencyKey())
	if err != nil {
		return nil, err
	}
	s.metrics.Claim(ctx, c.Incident, c.Action.String())
	return &impactv1.ClaimNoticeResponse{Claim: claimPB(c)}, nil
}

// waveConcurrency bounds the claims of one wave stream in flight at once:
// enough for a store to group commits (bbolt batches concurrent writes into
// one fsync; Redis pipelines), little enough to stay fair to other callers.
const waveConcurrency = 32

type waveResult struct {
	resp  *impactv1.ClaimNoticesResponse
	claim istatus.Claim
	err   error
}

// ClaimNotices answers a wave, one claim per request, in request order.
// Claims run concurrently (up to waveConcurrency); answers are sent in the
// order the requests came. The first error ends the stream. When the stream
// ends, the wave is recorded in the audit trail: one event per incident
// claimed in, with the counts per action (see istatus.Service.RecordWave).
func (s *noticeService) ClaimNotices(stream impactv1.NoticeService_ClaimNoticesServer) (err error) {
	waves := map[string]*istatus.Wave{} // by incident; written by this goroutine only
	defer func() { err = s.recordWaves(stream.Context(), waves, err) }()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	pending := make(chan chan waveResult, waveConcurrency)
	recvErr := make(chan error, 1)
	go func() {
		defer close(pending)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			done := make(chan waveResult, 1)
			select {
			case pending <- done:
			case <-ctx.Done():
				return
			}
			go func() { done <- s.claimOne(ctx, req) }()
		}
	}()
	for done := range pending {
		r := <-done
		if r.err != nil {
			return r.err
		}
		if err := stream.Send(r.resp); err != nil {
			return err
		}
		w := waves[r.claim.Incident]
		if w == nil {
			w = &istatus.Wave{Incident: r.claim.Incident}
			waves[r.claim.Incident] = w
		}
		w.Add(r.claim)
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}

func (s *noticeService) claimOne(ctx context.Context, req *impactv1.ClaimNoticesRequest) waveResult {
	c, err := s.status.Claim(ctx, req.GetIncidentId(), req.GetSubjectId(), req.GetIdempotencyKey())
	if err != nil {
		return waveResult{err: err}
	}
	s.metrics.Claim(ctx, c.Incident, c.Action.String())
	return waveResult{resp: &impactv1.ClaimNoticesResponse{SubjectId: req.GetSubjectId(), Claim: claimPB(c)}, claim: c}
}

// recordWaves records a wave's claims, per incident in id order, and
// returns the wave's error or, failing that, the first recording error.
func (s *noticeService) recordWaves(ctx context.Context, waves map[string]*istatus.Wave, waveErr error) error {
	incidents := make([]string, 0, len(waves))
	for inc := range waves {
		incidents = append(incidents, inc)
	}
	sort.Strings(incidents)
	err := waveErr
	for _, inc := range incidents {
		if rerr := s.status.RecordWave(ctx, actor(ctx), *waves[inc], waveErr); err == nil {
			err = rerr
		}
	}
	return err
}

func (s *noticeService) GetNoticeStats(ctx context.Context, req *impactv1.GetNoticeStatsRequest) (*impactv1.GetNoticeStatsResponse, error) {
	st, err := s.status.Stats(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	out := &impactv1.GetNoticeStatsResponse{
		IncidentId: st.Incident, VisibleVersion: uint32(st.Visible),
		Affected: uint32(st.Affected), UnderReview: uint32(st.UnderReview),
		Notified: uint32(st.Notified), Due: uint32(st.Due), CorrectionsDue: uint32(st.CorrectionsDue),
	}
	for _, c := range st.Cohorts {
		out.Cohorts = append(out.Cohorts, &impactv1.CohortNoticeStats{CohortId: c.ID, Title: c.Title,
			Members: uint32(c.Members), Notified: uint32(c.Notified), Due: uint32(c.Due)})
	}
	return out, nil
}

// RestoreNotices re-imports wave outbox lines into the ledger. The first
// invalid line ends the stream with its 1-based number; lines before it
// stay restored (restoring is idempotent: fix the file and send it again).
func (s *noticeService) RestoreNotices(stream impactv1.NoticeService_RestoreNoticesServer) error {
	ctx := stream.Context()
	var out impactv1.RestoreNoticesResponse
	for line := 1; ; line++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&out)
		}
		var invalid *invalidRequestError
		if errors.As(err, &invalid) {
			// The validation table refused the line: say which one.
			return fmt.Errorf("record %d: %w", line, err)
		}
		if err != nil {
			return err
		}
		res, err := s.status.Restore(ctx, req.GetIncidentId(), istatus.Notified{
			SubjectID: req.GetSubjectId(), Version: uint64(req.GetVersion()), NoticeID: req.GetNoticeId(),
			Status: statusFromPB(req.GetStatus()), NotifiedAt: req.GetNotifiedAt().AsTime(),
		})
		if err != nil {
			return fmt.Errorf("record %d: %w", line, err)
		}
		switch res {
		case istatus.Restored:
			out.Restored++
		case istatus.Present:
			out.Present++
		case istatus.KeptNewer:
			out.KeptNewer++
		}
	}
}

func actionPB(a istatus.Action) impactv1.ClaimAction {
	switch a {
	case istatus.ActionSend:
		return impactv1.ClaimAction_SEND
	case istatus.ActionAlreadySent:
		return impactv1.ClaimAction_ALREADY_SENT
	case istatus.ActionNone:
		return impactv1.ClaimAction_NONE
	}
	return impactv1.ClaimAction_CLAIM_ACTION_UNSPECIFIED
}

func claimPB(c istatus.Claim) *impactv1.Claim {
	out := &impactv1.Claim{
		Action:     actionPB(c.Action),
		IncidentId: c.Incident,
		Version:    uint32(c.Version),
		Status:     statusPB(c.Status),
		Cohorts:    cohortsPB(c.Cohorts),
		NoticeId:   c.NoticeID,
		NotifiedAt: timePB(c.NotifiedAt),
	}
	if c.Action != istatus.ActionNone {
		out.Notice = noticePB(c.Notice)
	}
	return out
}
