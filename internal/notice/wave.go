package notice

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// Wave counts the claims of one notice wave (a ClaimNotices stream) in one
// incident, for the audit trail.
type Wave struct {
	Incident string
	// Send, AlreadySent and None count the claims by action; Send counts
	// new notices only, and Replayed the sends that repeat an earlier
	// claim of the same wave (status.Claim.Replayed).
	Send, Replayed, AlreadySent, None int
	// Version is the newest version a claim was decided at (0: none).
	Version uint64
}

// Add counts one claim's answer.
func (w *Wave) Add(c status.Claim) {
	switch c.Action {
	case status.ActionSend:
		if c.Replayed {
			w.Replayed++
		} else {
			w.Send++
		}
	case status.ActionAlreadySent:
		w.AlreadySent++
	case status.ActionNone:
		w.None++
	}
	w.Version = max(w.Version, c.Version)
}

// RecordWave records a notice wave in the audit trail (store.AuditClaimWave):
// who ran it, the incident, the newest version claimed at with its digest,
// and the counts per action; waveErr, if the wave ended with an error, sets
// the outcome. Single ClaimNotice calls are not recorded one by one: the
// notification ledger (the pins) is their record, and the wave is the ops
// action. It returns waveErr, or an error if a wave that succeeded could
// not be recorded.
func (s *Service) RecordWave(ctx context.Context, actor string, w Wave, waveErr error) error {
	ev := store.AuditEvent{Action: store.AuditClaimWave, Actor: actor, Incident: w.Incident, Version: w.Version,
		Detail: fmt.Sprintf("%d claims: send %d new, %d replayed, already sent %d, none %d",
			w.Send+w.Replayed+w.AlreadySent+w.None, w.Send, w.Replayed, w.AlreadySent, w.None)}
	if w.Version != 0 {
		if v, err := s.versions.Get(ctx, w.Incident, w.Version); err == nil {
			ev.Digest = v.Info.Digest
		}
	}
	return s.audit.Record(ctx, ev, waveErr)
}
