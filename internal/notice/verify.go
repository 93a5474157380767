package notice

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// VerifyOutcome says how the ledger compares with one outbox line.
type VerifyOutcome int

const (
	// VerifyOK: the subject's pin is the line's notice.
	VerifyOK VerifyOutcome = iota + 1
	// VerifyNewer: the subject's pin is a newer notice (or another notice
	// at the line's version): the line was superseded, nothing is lost.
	VerifyNewer
	// VerifyMissing: the subject holds no pin: the ledger lost it.
	VerifyMissing
	// VerifyOlder: the subject's pin is older than the line's version.
	VerifyOlder
	// VerifyErased: the subject's account was closed since; nothing is due.
	VerifyErased
)

// Verify compares one notice of a wave outbox file with the ledger and
// returns how it compares, with the version of the pin the ledger holds (0
// if none). It reads and never writes: a missing or older pin is what
// Restore puts back.
func (s *Service) Verify(ctx context.Context, incident string, subjectID string, version uint64, noticeID string) (VerifyOutcome, uint64, error) {
	if err := status.CheckSubject(subjectID); err != nil {
		return 0, 0, err
	}
	if version == 0 || noticeID == "" {
		return 0, 0, fmt.Errorf("%w: version and notice id are required", status.ErrInvalidArgument)
	}
	// The ledger itself, past any replica's memory: a pin that Redis lost
	// (a failover) may still be in a replica's memory.
	view, err := status.ReadView(store.WithFresh(ctx), s.st, incident, s.keyer.SubjectKey(subjectID), nil)
	if err != nil {
		return 0, 0, err
	}
	switch p := view.Pin; {
	case view.Erased:
		return VerifyErased, 0, nil
	case p == nil:
		return VerifyMissing, 0, nil
	case p.NoticeID == noticeID:
		return VerifyOK, p.Version, nil
	case p.Version >= version:
		return VerifyNewer, p.Version, nil
	default:
		return VerifyOlder, p.Version, nil
	}
}
