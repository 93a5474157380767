package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// PendingPublish is a publish waiting for other admins' approval (impactd
// --publish-approvals 2 or more): what the requester reviewed, who asked and
// when, and who approved it so far.
type PendingPublish struct {
	Incident string
	// Version is the version to publish (one request per version).
	Version uint64
	// ExpectVisible: the visible version the requester expected; the
	// request lapses when the visible version moves.
	ExpectVisible uint64
	// AcceptCorrections: the corrections the requester accepted.
	AcceptCorrections uint64
	RequestedBy       string
	RequestedAt       time.Time
	// ExpiresAt: the request lapses after it.
	ExpiresAt time.Time
	// Source says what the version is ("upload", "rollback of vN").
	Source string
	// ApprovedBy: the admins who approved it, in order (the requester never).
	ApprovedBy []string
}

// PublishRequests is the store role that keeps pending publish requests, so
// that they survive a restart and every replica sees the same ones.
type PublishRequests interface {
	// PutPublishRequest records r (its ApprovedBy ignored: a new request has
	// no approvals). ErrConflict if a request for r.Version exists (the
	// caller deletes a lapsed one first); ErrNotFound for an unknown
	// incident.
	PutPublishRequest(ctx context.Context, r PendingPublish) error
	// GetPublishRequest returns the request for a version (ErrNotFound if
	// there is none).
	GetPublishRequest(ctx context.Context, incident string, version uint64) (PendingPublish, error)
	// ListPublishRequests returns an incident's requests by version (none
	// for an unknown incident).
	ListPublishRequests(ctx context.Context, incident string) ([]PendingPublish, error)
	// ApprovePublishRequest adds approver to the request's approvals, once
	// (approving twice changes nothing), atomically with concurrent
	// approvals, and returns the request as it then is. ErrNotFound if
	// there is no request for the version.
	ApprovePublishRequest(ctx context.Context, incident string, version uint64, approver string) (PendingPublish, error)
	// DeletePublishRequest removes the request for a version, if any.
	DeletePublishRequest(ctx context.Context, incident string, version uint64) error
}

// requestDoc is the stored form of a publish request.
type requestDoc struct {
	Incident          string    `json:"incident"`
	Version           uint64    `json:"version"`
	ExpectVisible     uint64    `json:"expect_visible"`
	AcceptCorrections uint64    `json:"accept_corrections"`
	RequestedBy       string    `json:"requested_by"`
	RequestedAt       time.Time `json:"requested_at"`
	ExpiresAt         time.Time `json:"expires_at"`
	Source            string    `json:"source,omitempty"`
	ApprovedBy        []string  `json:"approved_by,omitempty"`
}

// MarshalPublishRequest encodes a request for storage (times in UTC).
func MarshalPublishRequest(r PendingPublish) ([]byte, error) {
	b, err := json.Marshal(requestDoc{Incident: r.Incident, Version: r.Version, ExpectVisible: r.ExpectVisible,
		AcceptCorrections: r.AcceptCorrections, RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt.UTC(),
		ExpiresAt: r.ExpiresAt.UTC(), Source: r.Source, ApprovedBy: r.ApprovedBy})
	if err != nil {
		return nil, fmt.Errorf("encode publish request: %w", err)
	}
	return b, nil
}

// UnmarshalPublishRequest decodes what MarshalPublishRequest encoded.
func UnmarshalPublishRequest(b []byte) (PendingPublish, error) {
	var d requestDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return PendingPublish{}, fmt.Errorf("%w: decode publish request: %w", ErrVerify, err)
	}
	return PendingPublish{Incident: d.Incident, Version: d.Version, ExpectVisible: d.ExpectVisible,
		AcceptCorrections: d.AcceptCorrections, RequestedBy: d.RequestedBy, RequestedAt: d.RequestedAt,
		ExpiresAt: d.ExpiresAt, Source: d.Source, ApprovedBy: d.ApprovedBy}, nil
}

// WithApproval returns r with approver added to its approvals, once.
func (r PendingPublish) WithApproval(approver string) PendingPublish {
	if !slices.Contains(r.ApprovedBy, approver) {
		r.ApprovedBy = append(slices.Clone(r.ApprovedBy), approver)
	}
	return r
}
