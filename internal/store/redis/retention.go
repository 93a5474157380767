package redisstore

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/store"
)

// DeleteVersion removes a version's records, manifest and info. It refuses
// with store.ErrPinned the visible version and any version a subject's pin
// refers to. Idempotency records that refer to the version (replays of
// superseded claims) are removed with it.
//
// A claim may race with the deletion. DeleteVersion first marks the version
// "deleting" (one script on the incident's slot, which also refuses the
// visible version), then reads every pin. On a standalone or Sentinel Redis
// the claim script checks the version's state in the same script that
// writes the pin, so a claim either lands before the mark (and the pin scan
// finds it: the deletion is refused and the mark undone) or after it (and
// is refused with ErrConflict). On a Cluster the state is in another slot:
// ClaimPin writes the pin, then reads the state. Each step is a
// linearizable single-node operation, so at least one side sees the other:
// either the scan finds the new pin, or the claim sees the mark, undoes its
// pin and returns ErrConflict, and the caller decides again at the visible
// version. A version marked deleting cannot be published (publish needs
// staged or published) and is reported as aborted. If DeleteVersion stops
// half way (crash, Redis down), the version stays marked; calling it again
// finishes the job.
func (s *Store) DeleteVersion(ctx context.Context, incident string, version uint64) error {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return err
	}
	res, err := s.runScript(ctx, markDeletingScript, []string{s.headKey(incident), s.versionsKey(incident)}, version)
	if err != nil {
		return err
	}
	arr, _ := res.([]any)
	if len(arr) == 0 {
		return fmt.Errorf("%w: unexpected reply", store.ErrUnavailable)
	}
	switch arr[0] {
	case "ok":
	case "notfound":
		return fmt.Errorf("version: %w", store.ErrNotFound)
	case "visible":
		return fmt.Errorf("version %d is visible: %w", version, store.ErrPinned)
	default:
		return fmt.Errorf("%w: unexpected reply", store.ErrUnavailable)
	}
	bitsStr, _ := arr[1].(string)

	// Any pin at the version keeps it.
	pinned := false
	err = s.Pins(ctx, incident, func(_ store.Key, p store.Pin) error {
		if p.Version == version {
			pinned = true
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return err // left marked: a retry finishes or refuses
	}
	if pinned {
		if _, err := s.runScript(ctx, unmarkDeletingScript, []string{s.versionsKey(incident)}, version); err != nil {
			return err
		}
		return fmt.Errorf("version %d is pinned: %w", version, store.ErrPinned)
	}

	// Idempotency records at the version go with it.
	n := 1 << pinBits
	for lo := 0; lo < n; lo += readChunk {
		hi := min(n, lo+readChunk)
		var stale []struct {
			key   string
			field string
		}
		err := s.scanHashesRange(ctx, lo, hi, func(b int) string { return s.idemKey(incident, uint32(b)) },
			func(key, f, v string) error {
				if p, err := store.DecodePin([]byte(v)); err == nil && p.Version == version {
					stale = append(stale, struct{ key, field string }{key, f})
				}
				return nil
			})
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			p := s.c.Pipeline()
			for _, st := range stale {
				p.HDel(ctx, st.key, st.field)
			}
			if _, err := p.Exec(ctx); err != nil {
				return unavailable(err)
			}
		}
	}

	if bitsStr != "" {
		bits, err := parseBits(bitsStr)
		if err != nil {
			return err
		}
		if err := s.unlinkRecords(ctx, incident, version, bits); err != nil {
			return err
		}
	}
	if _, err := s.runScript(ctx, finishDeleteScript, s.feedKeys(s.versionsKey(incident), s.manifestKey(incident, version)), s.feedArgs(incident, version)...); err != nil {
		return err
	}
	s.bitsCache.Delete(versionRef{incident, version})
	return nil
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}
