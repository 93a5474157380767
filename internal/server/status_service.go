package server

import (
	"context"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/telemetry"
)

// statusService serves patients. The subject is the token's alone.
type statusService struct {
	impactv1.UnimplementedStatusServiceServer
	status  *status.Service
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
