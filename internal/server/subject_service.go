package server

import (
	"context"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/erasure"
)

// subjectService acts on patient accounts for operators with the
// impact.admin scope (account closure).
type subjectService struct {
	impactv1.UnimplementedSubjectServiceServer
	erasure *erasure.Service
}

// EraseSubject closes the subject's account (erasure.Service.Erase). The
// subject id is used to compute its key and is not kept or logged.
func (s *subjectService) EraseSubject(ctx context.Context, req *impactv1.EraseSubjectRequest) (*impactv1.EraseSubjectResponse, error) {
	n, err := s.erasure.Erase(ctx, req.GetSubjectId(), actor(ctx))
	if err != nil {
		return nil, err
	}
	return &impactv1.EraseSubjectResponse{PinsRemoved: uint32(n)}, nil
}
