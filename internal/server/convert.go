package server

// Conversions from domain and store values to impact.v1 messages.

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// statusPBs is the one mapping between store and API statuses, indexed by
// store status.
var statusPBs = [...]impactv1.Status{
	store.NotAffected: impactv1.Status_NOT_AFFECTED,
	store.Affected:    impactv1.Status_AFFECTED,
	store.UnderReview: impactv1.Status_UNDER_REVIEW,
}

// statusFromPB is the store status of a request's status; the validation
// table has refused STATUS_UNSPECIFIED already.
func statusFromPB(s impactv1.Status) store.Status {
	for st, pb := range statusPBs {
		if pb == s {
			return store.Status(st)
		}
	}
	return store.NotAffected
}

func statusPB(s store.Status) impactv1.Status {
	if int(s) < len(statusPBs) {
		return statusPBs[s]
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

func noticePB(n status.Notice) *impactv1.Notice {
	return &impactv1.Notice{Subject: n.Subject, Body: n.Body, SupportContact: n.SupportContact}
}

func answerPB(a status.Answer) *impactv1.StatusAnswer {
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

func actionPB(a status.Action) impactv1.ClaimAction {
	switch a {
	case status.ActionSend:
		return impactv1.ClaimAction_SEND
	case status.ActionAlreadySent:
		return impactv1.ClaimAction_ALREADY_SENT
	case status.ActionNone:
		return impactv1.ClaimAction_NONE
	}
	return impactv1.ClaimAction_CLAIM_ACTION_UNSPECIFIED
}

func claimPB(c status.Claim) *impactv1.Claim {
	out := &impactv1.Claim{
		Action:     actionPB(c.Action),
		IncidentId: c.Incident,
		Version:    uint32(c.Version),
		Status:     statusPB(c.Status),
		Cohorts:    cohortsPB(c.Cohorts),
		NoticeId:   c.NoticeID,
		NotifiedAt: timePB(c.NotifiedAt),
	}
	if c.Action != status.ActionNone {
		out.Notice = noticePB(c.Notice)
	}
	return out
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

func versionsPB(vs []uint64) []uint32 {
	out := make([]uint32, len(vs))
	for i, v := range vs {
		out[i] = uint32(v)
	}
	return out
}
