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
	// pad gives every answer its incident's size (invariant 12); asJSON
	// tells the calls whose answer the REST gateway sends as JSON.
	pad    *padder
	asJSON func(context.Context) bool
}

func (s *statusService) GetMyStatus(ctx context.Context, req *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	noCompression(ctx)
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, errPermissionDenied
	}
	a, err := s.status.Status(ctx, req.GetIncidentId(), p.Subject, uint64(req.GetAtLeastVersion()))
	if err != nil {
		return nil, err
	}
	pb := answerPB(a)
	if err := s.pad.pad(ctx, pb, a.NotifiedVersion, s.asJSON(ctx)); err != nil {
		return nil, err
	}
	s.metrics.Answer(ctx, a.Incident, a.Status, a.UpdatePending)
	return &impactv1.GetMyStatusResponse{Answer: pb}, nil
}

func (s *statusService) ListMyStatuses(ctx context.Context, _ *impactv1.ListMyStatusesRequest) (*impactv1.ListMyStatusesResponse, error) {
	noCompression(ctx)
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, errPermissionDenied
	}
	as, err := s.status.Statuses(ctx, p.Subject)
	if err != nil {
		return nil, err
	}
	asJSON := s.asJSON(ctx)
	out := &impactv1.ListMyStatusesResponse{Statuses: make([]*impactv1.StatusAnswer, len(as))}
	for i, a := range as {
		// Each entry has its incident's size, so the list has the size of
		// the incidents it holds.
		out.Statuses[i] = answerPB(a)
		if err := s.pad.pad(ctx, out.Statuses[i], a.NotifiedVersion, asJSON); err != nil {
			return nil, err
		}
	}
	for _, a := range as {
		s.metrics.Answer(ctx, a.Incident, a.Status, a.UpdatePending)
	}
	return out, nil
}
