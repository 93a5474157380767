package server

import (
	"context"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/store"
)

// defaultAuditPage is the page size of ListAuditEvents when none is asked.
const defaultAuditPage = 100

// ListAuditEvents reads the audit trail, oldest first, a page at a time.
func (s *snapshotService) ListAuditEvents(ctx context.Context, req *impactv1.ListAuditEventsRequest) (*impactv1.ListAuditEventsResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultAuditPage
	}
	size = store.AuditLimit(size)
	es, err := s.snapshots.Audit(ctx, req.GetIncidentId(), req.GetAfterSeq(), size)
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

func auditEventPB(e store.AuditEvent) *impactv1.AuditEvent {
	out := &impactv1.AuditEvent{
		Seq:        e.Seq,
		Time:       timePB(e.At),
		Actor:      e.Actor,
		Action:     e.Action,
		IncidentId: e.Incident,
		Version:    uint32(e.Version),
		Outcome:    e.Outcome,
		Detail:     e.Detail,
	}
	if e.Digest != (store.Digest{}) {
		out.Digest = e.Digest.String()
	}
	return out
}
