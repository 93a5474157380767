package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// Reasons a publish request or approval is refused (ReviewError.Reason).
const (
	// ReasonRequestUnknown: no pending request for the version.
	ReasonRequestUnknown = "PUBLISH_REQUEST_UNKNOWN"
	// ReasonRequestLapsed: the visible version moved since the request, or
	// it expired.
	ReasonRequestLapsed = "PUBLISH_REQUEST_LAPSED"
	// ReasonOwnRequest: the requester cannot approve their own request.
	ReasonOwnRequest = "OWN_PUBLISH_REQUEST"
	// ReasonAlreadyApproved: this admin approved the request already.
	ReasonAlreadyApproved = "ALREADY_APPROVED"
	// ReasonRequestPending: a live request for the version exists already.
	ReasonRequestPending = "PUBLISH_REQUEST_PENDING"
)

// ReviewError refuses a publish request or an approval; nothing changed.
type ReviewError struct {
	Reason   string
	Incident string
	Version  uint64
	Message  string
}

func (e *ReviewError) Error() string { return e.Message }

// DefaultApprovalTTL is how long a publish request waits for approvals.
const DefaultApprovalTTL = 24 * time.Hour

// WithApprovals makes every publish need k approvals, the requester's
// publish counting as the first (k <= 1: none; a publish is immediate),
// and sets how long a request waits for them (ttl <= 0: DefaultApprovalTTL).
func WithApprovals(k int, ttl time.Duration) Option {
	return func(s *Service) {
		s.approvals = max(k, 1)
		s.approvalTTL = ttl
		if ttl <= 0 {
			s.approvalTTL = DefaultApprovalTTL
		}
	}
}

// ApprovalsRequired is the number of admins a publish needs, the requester
// included: 1 when publishes are immediate.
func (s *Service) ApprovalsRequired() int { return max(s.approvals, 1) }

// Outcome is what a publish, rollback or approval did: published (Info,
// Previous), or left a request pending (Pending).
type Outcome struct {
	Info     store.VersionInfo
	Previous uint64
	Pending  *store.PendingPublish
}

// RequestPublish publishes like PublishReviewed when no approvals are
// needed. Otherwise it checks what the publish would be refused for now (a
// stale expectation, more corrections than accepted) and records a pending
// request for other admins to approve (store.AuditPublishRequest).
func (s *Service) RequestPublish(ctx context.Context, req PublishRequest) (Outcome, error) {
	if s.ApprovalsRequired() <= 1 {
		info, prev, err := s.PublishReviewed(ctx, req)
		return Outcome{Info: info, Previous: prev}, err
	}
	target, err := s.readable(ctx, req.Incident, req.Version)
	if err != nil {
		return Outcome{}, s.record(ctx, store.AuditEvent{Action: store.AuditPublishRequest, Actor: req.Actor, Incident: req.Incident, Version: req.Version,
			Detail: fmt.Sprintf("expected visible v%d", req.ExpectVisible)}, err)
	}
	return s.request(ctx, req, target, "upload")
}

// RequestRollback rolls back like RollbackReviewed when no approvals are
// needed. Otherwise it stages the copy of version req.To and records a
// pending request to publish it.
func (s *Service) RequestRollback(ctx context.Context, req RollbackRequest) (Outcome, error) {
	if s.ApprovalsRequired() <= 1 {
		info, prev, err := s.RollbackReviewed(ctx, req)
		return Outcome{Info: info, Previous: prev}, err
	}
	staged, nc, err := s.rollback(ctx, req, false)
	if err != nil {
		ev := store.AuditEvent{Action: store.AuditRollback, Actor: req.Actor, Incident: req.Incident,
			Detail: fmt.Sprintf("to the content of v%d, expected visible v%d", req.To, req.ExpectVisible) + correctionsDetail(nc, req.AcceptCorrections)}
		var ce *CorrectionsError
		if errors.As(err, &ce) {
			ev.Action, ev.Version = store.AuditPublishRefused, ce.Version
		}
		return Outcome{}, s.record(ctx, ev, err)
	}
	target, err := s.readable(ctx, req.Incident, staged.Version)
	if err != nil {
		return Outcome{}, err
	}
	return s.request(ctx, PublishRequest{Incident: req.Incident, Version: staged.Version, ExpectVisible: req.ExpectVisible,
		AcceptCorrections: req.AcceptCorrections, Actor: req.Actor}, target, fmt.Sprintf("rollback of v%d", req.To))
}

// request records a pending publish request for target, after checking it
// against the visible version and the corrections it would make now.
func (s *Service) request(ctx context.Context, req PublishRequest, target *Version, source string) (Outcome, error) {
	ev := store.AuditEvent{Action: store.AuditPublishRequest, Actor: req.Actor, Incident: req.Incident, Version: req.Version,
		Digest: target.Info.Digest, Detail: fmt.Sprintf("expected visible v%d", req.ExpectVisible)}
	r, nc, err := s.putRequest(ctx, req, target, source)
	ev.Detail += correctionsDetail(nc, req.AcceptCorrections)
	var ce *CorrectionsError
	switch {
	case errors.As(err, &ce):
		ev.Action = store.AuditPublishRefused
	case err == nil:
		ev.Detail = fmt.Sprintf("publish of v%d over v%d requested, %d approvals needed until %s",
			req.Version, req.ExpectVisible, s.ApprovalsRequired()-1, r.ExpiresAt.Format(time.RFC3339)) + correctionsDetail(nc, req.AcceptCorrections)
	}
	if err := s.record(ctx, ev, err); err != nil {
		return Outcome{}, err
	}
	return Outcome{Previous: req.ExpectVisible, Pending: &r}, nil
}

func (s *Service) putRequest(ctx context.Context, req PublishRequest, target *Version, source string) (store.PendingPublish, *NotifiedChanges, error) {
	head, err := s.st.Head(ctx, req.Incident)
	if err != nil {
		return store.PendingPublish{}, nil, versionError("publish", req.Incident, 0, err)
	}
	if head.Visible != req.ExpectVisible {
		return store.PendingPublish{}, nil, &VersionError{Kind: ErrStaleVisible, Incident: req.Incident, Version: req.Version,
			Expected: req.ExpectVisible, Visible: head.Visible}
	}
	if req.Version <= head.Visible {
		return store.PendingPublish{}, nil, &VersionError{Kind: ErrNotAfterVisible, Incident: req.Incident, Version: req.Version,
			Expected: req.ExpectVisible, Visible: head.Visible}
	}
	// Refuse now what the approval would refuse (it counts again then).
	nc, err := s.countCorrections(ctx, target, nil)
	if err != nil {
		return store.PendingPublish{}, nil, fmt.Errorf("count corrections of %s v%d: %w", req.Incident, req.Version, err)
	}
	if nc.Total > req.AcceptCorrections {
		return store.PendingPublish{}, nc, &CorrectionsError{Incident: req.Incident, Version: req.Version, ExpectVisible: req.ExpectVisible, Count: nc.Total, Accepted: req.AcceptCorrections}
	}
	now := s.now().UTC()
	r := store.PendingPublish{Incident: req.Incident, Version: req.Version, ExpectVisible: req.ExpectVisible,
		AcceptCorrections: req.AcceptCorrections, RequestedBy: req.Actor, RequestedAt: now,
		ExpiresAt: now.Add(s.approvalTTL), Source: source}
	err = s.st.PutPublishRequest(ctx, r)
	if errors.Is(err, store.ErrConflict) {
		// One request per version: a lapsed one gives way, a live one not.
		old, gerr := s.st.GetPublishRequest(ctx, req.Incident, req.Version)
		if gerr != nil {
			return store.PendingPublish{}, nc, gerr
		}
		if why := s.lapsed(old, head); why == "" {
			return store.PendingPublish{}, nc, &ReviewError{Reason: ReasonRequestPending, Incident: req.Incident, Version: req.Version,
				Message: fmt.Sprintf("a publish request for %s v%d by %s is pending until %s: approve it or let it lapse",
					req.Incident, req.Version, old.RequestedBy, old.ExpiresAt.Format(time.RFC3339))}
		} else if err := s.lapse(ctx, old, why); err != nil {
			return store.PendingPublish{}, nc, err
		}
		err = s.st.PutPublishRequest(ctx, r)
	}
	if err != nil {
		return store.PendingPublish{}, nc, fmt.Errorf("record publish request %s v%d: %w", req.Incident, req.Version, err)
	}
	return r, nc, nil
}

// lapsed says why a request can no longer be approved, "" if it can.
func (s *Service) lapsed(r store.PendingPublish, head store.Head) string {
	switch {
	case head.Visible != r.ExpectVisible:
		return fmt.Sprintf("the visible version moved from v%d to v%d", r.ExpectVisible, head.Visible)
	case !s.now().Before(r.ExpiresAt):
		return "it expired at " + r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return ""
}

// lapse removes a lapsed request and records why (store.AuditPublishLapse).
func (s *Service) lapse(ctx context.Context, r store.PendingPublish, why string) error {
	err := s.st.DeletePublishRequest(ctx, r.Incident, r.Version)
	return s.record(ctx, store.AuditEvent{Action: store.AuditPublishLapse, Actor: r.RequestedBy, Incident: r.Incident, Version: r.Version,
		Detail: fmt.Sprintf("request by %s lapsed: %s", r.RequestedBy, why)}, err)
}

// Approve approves the pending request to publish version as approver. The
// requester cannot approve their own request, nor an admin twice; an
// unknown or lapsed request cannot be approved (a *ReviewError for each;
// a lapsed request is removed). The last approval needed publishes, with
// the corrections counted again under the publish fence (refused, and the
// request removed, if there are more than the requester accepted). Each
// approval is audited (store.AuditPublishApproval), as is the publish.
func (s *Service) Approve(ctx context.Context, incident string, version uint64, approver string) (store.PendingPublish, Outcome, error) {
	ev := store.AuditEvent{Action: store.AuditPublishApproval, Actor: approver, Incident: incident, Version: version}
	r, out, err := s.approve(ctx, incident, version, approver, &ev)
	return r, out, s.record(ctx, ev, err)
}

func (s *Service) approve(ctx context.Context, incident string, version uint64, approver string, ev *store.AuditEvent) (store.PendingPublish, Outcome, error) {
	if s.ApprovalsRequired() <= 1 {
		return store.PendingPublish{}, Outcome{}, &ReviewError{Reason: ReasonRequestUnknown, Incident: incident, Version: version, Message: "publishes need no approval here (impactd --publish-approvals 1)"}
	}
	r, err := s.st.GetPublishRequest(ctx, incident, version)
	if errors.Is(err, store.ErrNotFound) {
		ev.Detail = "no pending request"
		return store.PendingPublish{}, Outcome{}, &ReviewError{Reason: ReasonRequestUnknown, Incident: incident, Version: version,
			Message: fmt.Sprintf("no pending publish request for %s v%d ('impactctl snapshot requests --incident %s' lists them)", incident, version, incident)}
	}
	if err != nil {
		return store.PendingPublish{}, Outcome{}, err
	}
	ev.Detail = "request by " + r.RequestedBy
	if approver == r.RequestedBy {
		return r, Outcome{}, &ReviewError{Reason: ReasonOwnRequest, Incident: incident, Version: version, Message: fmt.Sprintf("%s requested the publish of %s v%d: another admin must approve it", approver, incident, version)}
	}
	for _, a := range r.ApprovedBy {
		if a == approver {
			return r, Outcome{}, &ReviewError{Reason: ReasonAlreadyApproved, Incident: incident, Version: version, Message: fmt.Sprintf("%s approved the publish of %s v%d already", approver, incident, version)}
		}
	}
	head, err := s.st.Head(ctx, incident)
	if err != nil {
		return r, Outcome{}, fmt.Errorf("head %s: %w", incident, err)
	}
	if why := s.lapsed(r, head); why != "" {
		if err := s.lapse(ctx, r, why); err != nil {
			return r, Outcome{}, err
		}
		return r, Outcome{}, &ReviewError{Reason: ReasonRequestLapsed, Incident: incident, Version: version, Message: fmt.Sprintf("the publish request for %s v%d lapsed: %s; request it again", incident, version, why)}
	}
	r, err = s.st.ApprovePublishRequest(ctx, incident, version, approver)
	if err != nil {
		return r, Outcome{}, fmt.Errorf("approve publish request %s v%d: %w", incident, version, err)
	}
	need := s.ApprovalsRequired() - 1
	ev.Detail = fmt.Sprintf("request by %s: approval %d of %d", r.RequestedBy, len(r.ApprovedBy), need)
	if len(r.ApprovedBy) < need {
		return r, Outcome{Previous: r.ExpectVisible, Pending: &r}, nil
	}
	// The last approval: publish, counting the corrections again.
	preq := PublishRequest{Incident: incident, Version: version, ExpectVisible: r.ExpectVisible, AcceptCorrections: r.AcceptCorrections, Actor: approver}
	info, prev, perr := s.publishApproved(ctx, preq, r)
	var ce *CorrectionsError
	if perr == nil || errors.As(perr, &ce) || errors.Is(perr, store.ErrConflict) {
		// Done, or can never pass as it stands: the request goes.
		if derr := s.st.DeletePublishRequest(ctx, incident, version); derr != nil && perr == nil {
			perr = fmt.Errorf("published, but the request could not be removed: %w", derr)
		}
	}
	if perr != nil {
		return r, Outcome{}, perr
	}
	return r, Outcome{Info: info, Previous: prev}, nil
}

// publishApproved is the approved request's publish, audited as a publish
// by the last approver that names the requester and the approvers.
func (s *Service) publishApproved(ctx context.Context, req PublishRequest, r store.PendingPublish) (store.VersionInfo, uint64, error) {
	info, nc, err := s.checkedPublish(ctx, req)
	who := fmt.Sprintf("; requested by %s, approved by %s", r.RequestedBy, strings.Join(r.ApprovedBy, ", "))
	return info, req.ExpectVisible, s.record(ctx, publishEvent(req, info, nc, err, who), err)
}

// PendingRequest is a publish request with where it stands.
type PendingRequest struct {
	store.PendingPublish
	// Lapsed says why it can no longer be approved ("" while it can).
	Lapsed string
}

// PublishRequests lists an incident's publish requests by version, with
// those that lapsed (and are not removed yet) marked.
func (s *Service) PublishRequests(ctx context.Context, incident string) ([]PendingRequest, error) {
	head, err := s.st.Head(ctx, incident)
	if err != nil {
		return nil, fmt.Errorf("head %s: %w", incident, err)
	}
	rs, err := s.st.ListPublishRequests(ctx, incident)
	if err != nil {
		return nil, fmt.Errorf("publish requests %s: %w", incident, err)
	}
	out := make([]PendingRequest, len(rs))
	for i, r := range rs {
		out[i] = PendingRequest{PendingPublish: r, Lapsed: s.lapsed(r, head)}
	}
	return out, nil
}
