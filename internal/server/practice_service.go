package server

import (
	"context"
	"errors"
	"io"
	"sort"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
)

// MaxPracticeBodyBytes caps the REST body of a patients:check call: 10,000
// ids of up to 128 bytes, JSON-quoted.
const MaxPracticeBodyBytes = 2 << 20

// practiceService serves practices (impact.practice). The practice is the
// token's practice_id claim alone.
type practiceService struct {
	impactv1.UnimplementedPracticeServiceServer
	practice *practice.Service
	limit    ratelimit.WeightedLimiter // ids checked per practice; nil: none
	guard    *guard
}

// practiceCaller is the authenticated practice; the policy admits only
// tokens with the practice scope, which carry a practice id.
func practiceCaller(ctx context.Context) (practice.Caller, error) {
	p, ok := principalFrom(ctx)
	if !ok || p.Practice == "" {
		return practice.Caller{}, errPermissionDenied
	}
	return practice.Caller{Actor: p.Subject, Practice: p.Practice}, nil
}

// allowIDs spends n ids of the practice's rate limit (failing open, like
// the patient listener's limits, when the limiter cannot decide).
func (s *practiceService) allowIDs(ctx context.Context, c practice.Caller, n int) error {
	if s.limit == nil || s.guard == nil || s.guard.keys == nil {
		return nil
	}
	return s.guard.allow(ctx, ratelimit.Weighted(s.limit, n), "practice", s.guard.keys.Key("practice", c.Practice))
}

func (s *practiceService) GetPracticeImpact(ctx context.Context, req *impactv1.GetPracticeImpactRequest) (*impactv1.GetPracticeImpactResponse, error) {
	c, err := practiceCaller(ctx)
	if err != nil {
		return nil, err
	}
	im, err := s.practice.Impact(ctx, c, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	out := &impactv1.GetPracticeImpactResponse{
		IncidentId: im.Incident, IncidentTitle: im.IncidentTitle, PracticeId: im.Practice,
		Affected: im.Affected, Version: uint32(im.Version),
		AffectedPatients: uint32(im.AffectedPatients), UnderReviewPatients: uint32(im.UnderReviewPatients),
		Notified: uint32(im.Notified), Due: uint32(im.Due), CorrectionsDue: uint32(im.CorrectionsDue),
		CountedAt: timePB(im.CountedAt),
	}
	if n := im.Notice; n != nil {
		out.PracticeNotice = &impactv1.PracticeNotice{Subject: n.Subject, Body: n.Body}
	}
	for _, ci := range im.Cohorts {
		out.Cohorts = append(out.Cohorts, &impactv1.PracticeCohortImpact{
			CohortId: ci.Cohort.ID, Title: ci.Cohort.Title, DataCategories: ci.Cohort.DataCategories,
			PracticeGuidance: ci.Cohort.PracticeGuidance,
			Affected:         uint32(ci.Affected), UnderReview: uint32(ci.UnderReview),
			Notified: uint32(ci.Notified), Due: uint32(ci.Due),
		})
	}
	return out, nil
}

func (s *practiceService) CheckPatients(ctx context.Context, req *impactv1.CheckPatientsRequest) (*impactv1.CheckPatientsResponse, error) {
	c, err := practiceCaller(ctx)
	if err != nil {
		return nil, err
	}
	ids := req.GetSubjectIds()
	if err := s.allowIDs(ctx, c, len(ids)); err != nil {
		return nil, s.practice.RecordChecks(ctx, c, req.GetIncidentId(), 0, len(ids), 0, err)
	}
	chk, err := s.practice.CheckPatients(ctx, c, req.GetIncidentId(), ids)
	if err != nil {
		return nil, err
	}
	return &impactv1.CheckPatientsResponse{Check: patientCheckPB(chk)}, nil
}

// streamTotals counts one stream's checks of one incident for the audit
// trail.
type streamTotals struct {
	version        uint64
	checked, found int
}

// CheckPatientsStream answers each batch of a register in order. The
// stream is recorded in the audit trail once per incident at its end, with
// the totals; it stops at the first failed batch (a register is never
// answered in part without the caller seeing the error).
func (s *practiceService) CheckPatientsStream(stream impactv1.PracticeService_CheckPatientsStreamServer) (err error) {
	ctx := stream.Context()
	c, err := practiceCaller(ctx)
	if err != nil {
		return err
	}
	totals := map[string]*streamTotals{}
	var failed string
	defer func() {
		incidents := make([]string, 0, len(totals))
		for inc := range totals {
			incidents = append(incidents, inc)
		}
		sort.Strings(incidents)
		for _, inc := range incidents {
			t := totals[inc]
			var batchErr error
			if inc == failed {
				batchErr = err
			}
			if rerr := s.practice.RecordChecks(ctx, c, inc, t.version, t.checked, t.found, batchErr); err == nil {
				err = rerr
			}
		}
	}()
	for {
		req, rerr := stream.Recv()
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		inc, ids := req.GetIncidentId(), req.GetSubjectIds()
		t := totals[inc]
		if t == nil {
			t = &streamTotals{}
			totals[inc] = t
		}
		t.checked += len(ids)
		if err := s.allowIDs(ctx, c, len(ids)); err != nil {
			failed = inc
			return err
		}
		chk, err := s.practice.Check(ctx, c, inc, ids)
		if err != nil {
			failed = inc
			return err
		}
		t.version, t.found = max(t.version, chk.Version), t.found+len(chk.Patients)
		if err := stream.Send(&impactv1.CheckPatientsStreamResponse{Check: patientCheckPB(chk)}); err != nil {
			return err
		}
	}
}

func patientCheckPB(chk practice.Check) *impactv1.PatientCheck {
	out := &impactv1.PatientCheck{IncidentId: chk.Incident, Version: uint32(chk.Version), Checked: uint32(chk.Checked),
		Patients: make([]*impactv1.PracticePatient, len(chk.Patients))}
	for i, p := range chk.Patients {
		a := p.Answer
		out.Patients[i] = &impactv1.PracticePatient{
			SubjectId:       p.SubjectID,
			Status:          statusPB(a.Status),
			Cohorts:         cohortsPB(a.Cohorts),
			NotifiedVersion: uint32(a.NotifiedVersion),
			NotifiedAt:      timePB(a.NotifiedAt),
			NoticeId:        a.NoticeID,
			UpdatePending:   a.UpdatePending,
			VisibleStatus:   statusPB(a.VisibleStatus),
		}
	}
	return out
}

// practiceStatsService gives operators (impact.admin) the per-practice
// table.
type practiceStatsService struct {
	impactv1.UnimplementedPracticeStatsServiceServer
	practice *practice.Service
}

func (s *practiceStatsService) GetPracticeStats(ctx context.Context, req *impactv1.GetPracticeStatsRequest) (*impactv1.GetPracticeStatsResponse, error) {
	t, err := s.practice.Stats(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	out := &impactv1.GetPracticeStatsResponse{IncidentId: t.Incident, VisibleVersion: uint32(t.Visible), CountedAt: timePB(t.CountedAt)}
	for _, p := range t.Practices {
		out.Practices = append(out.Practices, &impactv1.PracticeStats{
			PracticeId: p.Practice, Affected: uint32(p.Affected), UnderReview: uint32(p.UnderReview),
			Notified: uint32(p.Notified), Due: uint32(p.Due), CorrectionsDue: uint32(p.CorrectionsDue),
		})
	}
	return out, nil
}
