package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// CorrectionsError: a publish (or rollback) would change the status of more
// already-notified subjects than the operator accepted. Nothing changed.
type CorrectionsError struct {
	Incident string
	Version  uint64
	// ExpectVisible is the visible version the publish expected.
	ExpectVisible uint64
	// Count is the number of notified subjects whose status the publish
	// would change, counted when it ran; Accepted is what was accepted.
	Count, Accepted uint64
}

func (e *CorrectionsError) Error() string {
	return fmt.Sprintf("publishing %s v%d would correct %d already-notified subjects, %d accepted",
		e.Incident, e.Version, e.Count, e.Accepted)
}

// PublishRequest is a publish with its review: the visible version the
// operator expects and the corrections they accept.
type PublishRequest struct {
	Incident      string
	Version       uint64
	ExpectVisible uint64
	// AcceptCorrections: how many notified subjects whose status changes
	// the operator accepts (NotifiedChanges.Total of the diff reviewed).
	AcceptCorrections uint64
	Actor             string
}

// The publish fence (store.Fences): claims at the versions up to the
// visible one are refused from before the count until fenceTTL after the
// last renewal. The count renews the fence every fenceRenew, and the flip is
// sent only while at least fenceMargin of the lease is left, measured on
// this process's monotonic clock from before the renewal was sent: a claim
// that would pin a subject at the old version between the count and the
// flip is refused (it decides again, at the new version once published).
// A refused publish lifts the fence at once; after the flip it is kept for
// a grace (WithFenceGrace, DefaultFenceGrace), longer than a claim takes
// from its read to its write: a claim that read the old visible version
// before the flip and writes after it is refused too. Pins restored from
// the outbox at the old versions wait out the grace (they are refused
// with "contended, retry").
const (
	fenceTTL    = 2 * time.Minute
	fenceRenew  = fenceTTL / 4
	fenceMargin = fenceTTL / 2
)

// DefaultFenceGrace is how long a publish's fence outlives a successful
// flip.
const DefaultFenceGrace = 30 * time.Second

// WithFenceGrace sets how long a publish's fence outlives its flip (0:
// lifted at once, which lets a claim in flight at the flip pin a subject at
// the old version uncounted; for tests that restore pins right after a
// publish).
// unfenceTimeout bounds lifting a fence after a refused publish, which goes
// on when the caller has gone (the fence would otherwise hold claims until
// it expires).
const unfenceTimeout = 10 * time.Second

func WithFenceGrace(d time.Duration) Option { return func(s *Service) { s.fenceGrace = d } }

// errFenceLapsed: the count outlived its fence (a store far too slow).
var errFenceLapsed = fmt.Errorf("%w: the publish's count outlasted its fence, retry", store.ErrUnavailable)

// checkedPublish flips the visible version of req.Incident to req.Version
// if the visible version is req.ExpectVisible and no more than
// req.AcceptCorrections notified subjects change status. The count is made
// under a publish fence (see store.Fences), so a claim racing the publish
// is either counted or refused; never does a pin at an old version appear
// between the count and the flip. It returns the count it made (nil if it
// did not get that far).
func (s *Service) checkedPublish(ctx context.Context, req PublishRequest) (store.VersionInfo, *NotifiedChanges, error) {
	target, err := s.readable(ctx, req.Incident, req.Version)
	if err != nil {
		return store.VersionInfo{}, nil, err
	}
	if req.Version <= req.ExpectVisible {
		return store.VersionInfo{}, nil, publishError(ctx, s.st, "publish", req.Incident, req.Version, req.ExpectVisible, store.ErrConflict)
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return store.VersionInfo{}, nil, err
	}
	id := hex.EncodeToString(b[:])
	lease := time.Now()
	if err := s.st.Fence(ctx, req.Incident, req.ExpectVisible, id, fenceTTL); err != nil {
		return store.VersionInfo{}, nil, publishError(ctx, s.st, "publish", req.Incident, req.Version, req.ExpectVisible, err)
	}
	renew := func() error {
		if time.Since(lease) < fenceRenew {
			return nil
		}
		if time.Since(lease) >= fenceTTL-fenceMargin/4 {
			return errFenceLapsed
		}
		at := time.Now()
		if err := s.st.Fence(ctx, req.Incident, req.ExpectVisible, id, fenceTTL); err != nil {
			return err
		}
		lease = at
		return nil
	}
	unfence := func(err error) error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unfenceTimeout)
		defer cancel()
		if uerr := s.st.Unfence(uctx, req.Incident, id); uerr != nil {
			// The fence expires by itself; claims wait until then.
			return errors.Join(err, fmt.Errorf("lift publish fence: %w", uerr))
		}
		return err
	}
	nc, err := s.countCorrections(ctx, target, renew)
	if err == nil && time.Since(lease) >= fenceTTL-fenceMargin {
		err = renew()
	}
	if err != nil {
		return store.VersionInfo{}, nil, unfence(fmt.Errorf("count corrections of %s v%d: %w", req.Incident, req.Version, err))
	}
	if nc.Total > req.AcceptCorrections {
		return store.VersionInfo{}, nc, unfence(&CorrectionsError{Incident: req.Incident, Version: req.Version, ExpectVisible: req.ExpectVisible, Count: nc.Total, Accepted: req.AcceptCorrections})
	}
	info, err := s.st.Publish(ctx, store.PublishRequest{Incident: req.Incident, Version: req.Version, ExpectVisible: req.ExpectVisible, Actor: req.Actor, At: s.now()})
	if err != nil {
		return store.VersionInfo{}, nc, unfence(publishError(ctx, s.st, "publish", req.Incident, req.Version, req.ExpectVisible, err))
	}
	// Claims at the new visible version were never covered. A claim
	// decided at the old one and written after the flip would pin a subject
	// the count did not see: the fence stays for a grace to refuse it (it
	// decides again, at the new version).
	if s.fenceGrace <= 0 {
		return info, nc, unfence(nil)
	}
	// If the renewal fails the publish still stands, and the fence expires
	// at the end of its lease, which is longer than the grace.
	_ = s.st.Fence(context.WithoutCancel(ctx), req.Incident, req.ExpectVisible, id, s.fenceGrace)
	return info, nc, nil
}

// correctionsDetail says, for the audit trail, what a publish corrects.
func correctionsDetail(nc *NotifiedChanges, accepted uint64) string {
	if nc == nil || nc.Total == 0 && accepted == 0 {
		return ""
	}
	return fmt.Sprintf("; corrections %d of %d notified (accepted %d)", nc.Total, nc.Pinned, accepted)
}

// PublishReviewed is Publish with the operator's accepted corrections:
// refused with a *CorrectionsError (and nothing changed) when more notified
// subjects would change status than req.AcceptCorrections. A refusal is
// recorded in the audit trail (store.AuditPublishRefused, with the counts),
// as is the publish. It publishes at once: RequestPublish is the entry point
// that enforces approvals (WithApprovals).
func (s *Service) PublishReviewed(ctx context.Context, req PublishRequest) (store.VersionInfo, uint64, error) {
	info, nc, err := s.checkedPublish(ctx, req)
	return info, req.ExpectVisible, s.record(ctx, publishEvent(req, info, nc, err, ""), err)
}

// publishEvent is the audit event of a checked publish that ended with
// err: a publish, or a refusal for too many corrections; suffix ends its
// detail.
func publishEvent(req PublishRequest, info store.VersionInfo, nc *NotifiedChanges, err error, suffix string) store.AuditEvent {
	ev := store.AuditEvent{Action: store.AuditPublish, Actor: req.Actor, Incident: req.Incident, Version: req.Version, Digest: info.Digest,
		Detail: fmt.Sprintf("visible v%d -> v%d", req.ExpectVisible, req.Version) + correctionsDetail(nc, req.AcceptCorrections) + suffix}
	if err != nil {
		ev.Detail = fmt.Sprintf("expected visible v%d", req.ExpectVisible) + correctionsDetail(nc, req.AcceptCorrections) + suffix
		var ce *CorrectionsError
		if errors.As(err, &ce) {
			ev.Action = store.AuditPublishRefused
		}
	}
	return ev
}

// RollbackRequest is a rollback with its review.
type RollbackRequest struct {
	Incident          string
	To                uint64
	ExpectVisible     uint64
	AcceptCorrections uint64
	Actor             string
}
