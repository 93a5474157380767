package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/notice"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/telemetry"
)

// noticeService is the notification ledger, for the impact.notify scope.
type noticeService struct {
	impactv1.UnimplementedNoticeServiceServer
	status  *status.Service    // the claim decision
	notices *notice.Service    // stats, restore, verify, wave bookkeeping
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
	claim status.Claim
	err   error
}

// ClaimNotices answers a wave, one claim per request, in request order.
// Claims run concurrently (up to waveConcurrency); answers are sent in the
// order the requests came. The first error ends the stream. When the stream
// ends, the wave is recorded in the audit trail: one event per incident
// claimed in, with the counts per action (see notice.Service.RecordWave).
func (s *noticeService) ClaimNotices(stream impactv1.NoticeService_ClaimNoticesServer) (err error) {
	waves := map[string]*notice.Wave{} // by incident; written by this goroutine only
	defer func() { err = recordPerIncident(stream.Context(), waves, err, s.notices.RecordWave) }()
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
			w = &notice.Wave{Incident: r.claim.Incident}
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
	return waveResult{resp: &impactv1.ClaimNoticesResponse{SubjectId: req.GetSubjectId(), Claim: claimPB(c), Replayed: c.Replayed}, claim: c}
}

// recordPerIncident records the tallies of one ops stream (a wave of
// claims, a restore), one audit event per incident in id order, with the
// caller as the actor, and returns the stream's error or, failing that, the
// first recording error.
func recordPerIncident[T any](ctx context.Context, tallies map[string]*T, streamErr error,
	record func(ctx context.Context, actor string, tally T, streamErr error) error,
) error {
	incidents := make([]string, 0, len(tallies))
	for inc := range tallies {
		incidents = append(incidents, inc)
	}
	sort.Strings(incidents)
	err := streamErr
	for _, inc := range incidents {
		if rerr := record(ctx, actor(ctx), *tallies[inc], streamErr); err == nil {
			err = rerr
		}
	}
	return err
}

func (s *noticeService) GetNoticeStats(ctx context.Context, req *impactv1.GetNoticeStatsRequest) (*impactv1.GetNoticeStatsResponse, error) {
	st, err := s.notices.Stats(ctx, req.GetIncidentId())
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
// When the stream ends, the restore is recorded in the audit trail: one
// event per incident restored into, with the counts per outcome (see
// notice.Service.RecordRestore).
func (s *noticeService) RestoreNotices(stream impactv1.NoticeService_RestoreNoticesServer) error {
	ctx := stream.Context()
	runs := map[string]*notice.Restoration{} // by incident
	out, err := s.restore(stream, runs)
	if err = recordPerIncident(ctx, runs, err, s.notices.RecordRestore); err != nil {
		return err
	}
	return stream.SendAndClose(out)
}

// restore restores the stream's lines, counting them in runs.
func (s *noticeService) restore(stream impactv1.NoticeService_RestoreNoticesServer, runs map[string]*notice.Restoration) (*impactv1.RestoreNoticesResponse, error) {
	ctx := stream.Context()
	var out impactv1.RestoreNoticesResponse
	for line := 1; ; line++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return &out, nil
		}
		var invalid *invalidRequestError
		if errors.As(err, &invalid) {
			// The validation table refused the line: say which one.
			return nil, fmt.Errorf("record %d: %w", line, err)
		}
		if err != nil {
			return nil, err
		}
		res, err := s.notices.Restore(ctx, req.GetIncidentId(), notice.Notified{
			SubjectID: req.GetSubjectId(), Version: uint64(req.GetVersion()), NoticeID: req.GetNoticeId(),
			Status: statusFromPB(req.GetStatus()), NotifiedAt: req.GetNotifiedAt().AsTime(),
		})
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", line, err)
		}
		r := runs[req.GetIncidentId()]
		if r == nil {
			r = &notice.Restoration{Incident: req.GetIncidentId()}
			runs[r.Incident] = r
		}
		r.Add(res)
		switch res {
		case notice.Restored:
			out.Restored++
		case notice.Present:
			out.Present++
		case notice.KeptNewer:
			out.KeptNewer++
		}
	}
}
