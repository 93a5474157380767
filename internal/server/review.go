package server

import (
	"context"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

// notifiedChangesPB converts the contradiction report.
func notifiedChangesPB(nc *snapshot.NotifiedChanges) *impactv1.NotifiedChanges {
	out := &impactv1.NotifiedChanges{Notified: uint32(nc.Pinned), Total: uint32(nc.Total)}
	for k, n := range nc.Transitions {
		out.Transitions = append(out.Transitions, &impactv1.StatusTransition{From: statusPB(k[0]), To: statusPB(k[1]), Count: uint32(n)})
	}
	sortTransitions(out.Transitions)
	for _, c := range nc.Cohorts {
		out.Cohorts = append(out.Cohorts, &impactv1.CohortTransition{CohortId: c.Cohort, From: statusPB(c.From), To: statusPB(c.To), Count: uint32(c.Count)})
	}
	return out
}

// moveFunc is a call that moves the visible version (see moveVisible).
type moveFunc = func(ctx context.Context, incident string, version, expectVisible uint64, actor string) (store.VersionInfo, uint64, error)

// reviewedPublish is PublishReviewed accepting accept corrections.
func (s *snapshotService) reviewedPublish(accept uint32) moveFunc {
	return func(ctx context.Context, incident string, version, expectVisible uint64, actor string) (store.VersionInfo, uint64, error) {
		return s.snapshots.PublishReviewed(ctx, snapshot.PublishRequest{
			Incident: incident, Version: version, ExpectVisible: expectVisible, AcceptCorrections: uint64(accept), Actor: actor,
		})
	}
}

// reviewedRollback is RollbackReviewed accepting accept corrections.
func (s *snapshotService) reviewedRollback(accept uint32) moveFunc {
	return func(ctx context.Context, incident string, to, expectVisible uint64, actor string) (store.VersionInfo, uint64, error) {
		return s.snapshots.RollbackReviewed(ctx, snapshot.RollbackRequest{
			Incident: incident, To: to, ExpectVisible: expectVisible, AcceptCorrections: uint64(accept), Actor: actor,
		})
	}
}

// requestPublish is PublishSnapshot when publishes need approvals: a
// pending request (or a refusal).
func (s *snapshotService) requestPublish(ctx context.Context, req *impactv1.PublishSnapshotRequest) (*impactv1.PublishSnapshotResponse, error) {
	out, err := s.snapshots.RequestPublish(ctx, snapshot.PublishRequest{
		Incident: req.GetIncidentId(), Version: uint64(req.GetVersion()), ExpectVisible: uint64(req.GetExpectedVisibleVersion()),
		AcceptCorrections: uint64(req.GetAcceptCorrections()), Actor: actor(ctx),
	})
	if err != nil {
		return nil, err
	}
	return &impactv1.PublishSnapshotResponse{PreviousVisibleVersion: uint32(out.Previous), Pending: s.requestPB(out.Pending, "")}, nil
}

// requestRollback is RollbackSnapshot when publishes need approvals: the
// copy is staged and its publish requested.
func (s *snapshotService) requestRollback(ctx context.Context, req *impactv1.RollbackSnapshotRequest) (*impactv1.RollbackSnapshotResponse, error) {
	out, err := s.snapshots.RequestRollback(ctx, snapshot.RollbackRequest{
		Incident: req.GetIncidentId(), To: uint64(req.GetToVersion()), ExpectVisible: uint64(req.GetExpectedVisibleVersion()),
		AcceptCorrections: uint64(req.GetAcceptCorrections()), Actor: actor(ctx),
	})
	if err != nil {
		return nil, err
	}
	resp := &impactv1.RollbackSnapshotResponse{PreviousVisibleVersion: uint32(out.Previous), Pending: s.requestPB(out.Pending, "")}
	if out.Pending != nil {
		if v, err := s.catalog.Get(ctx, req.GetIncidentId(), out.Pending.Version); err == nil {
			resp.Snapshot = s.infoPB(ctx, v.Info, uint64(req.GetExpectedVisibleVersion()))
		}
	}
	return resp, nil
}

func (s *snapshotService) ApprovePublish(ctx context.Context, req *impactv1.ApprovePublishRequest) (*impactv1.ApprovePublishResponse, error) {
	r, out, err := s.snapshots.Approve(ctx, req.GetIncidentId(), uint64(req.GetVersion()), actor(ctx))
	if err != nil {
		return nil, err
	}
	resp := &impactv1.ApprovePublishResponse{Request: s.requestPB(&r, ""), PreviousVisibleVersion: uint32(out.Previous)}
	if out.Pending == nil {
		resp.Snapshot = s.infoPB(ctx, out.Info, out.Info.Version)
	}
	return resp, nil
}

func (s *snapshotService) ListPublishRequests(ctx context.Context, req *impactv1.ListPublishRequestsRequest) (*impactv1.ListPublishRequestsResponse, error) {
	rs, err := s.snapshots.PublishRequests(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	out := &impactv1.ListPublishRequestsResponse{}
	for _, r := range rs {
		out.Requests = append(out.Requests, s.requestPB(&r.PendingPublish, r.Lapsed))
	}
	return out, nil
}

// requestPB converts a publish request; lapsed says why it lapsed ("": it
// has not).
func (s *snapshotService) requestPB(r *store.PendingPublish, lapsed string) *impactv1.PublishRequest {
	if r == nil {
		return nil
	}
	state := impactv1.PublishRequestState_PENDING
	if lapsed != "" {
		state = impactv1.PublishRequestState_LAPSED
	}
	return &impactv1.PublishRequest{
		IncidentId: r.Incident, Version: uint32(r.Version), ExpectedVisibleVersion: uint32(r.ExpectVisible),
		AcceptCorrections: uint32(r.AcceptCorrections), RequestedBy: r.RequestedBy, RequestedAt: timePB(r.RequestedAt),
		ExpiresAt: timePB(r.ExpiresAt), ApprovedBy: r.ApprovedBy, ApprovalsRequired: uint32(s.snapshots.ApprovalsRequired()),
		State: state, Source: r.Source,
	}
}
