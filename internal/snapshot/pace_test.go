package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/pace"
)

// TestUploadYieldsToReads: with WithPacer, an upload yields while it parses
// (both passes) and loads, pausing only while reads are in flight; held
// back by a read that never ends it still completes (the pacer's progress
// floor), with exactly the content of an unpaced upload. So does a
// rollback's copy.
func TestUploadYieldsToReads(t *testing.T) {
	csv := header + strings.Join(rosterLines(20000, 9), "\n") // ~600 KB: many 16 KiB reads per pass
	plain := upload(t, newTestService(t, openStore(t)), csv)

	idle := pace.New(pace.Config{})
	info := upload(t, newTestService(t, openStore(t), WithPacer(idle)), csv)
	if info.Digest != plain.Digest || info.Counts.Entries != plain.Counts.Entries {
		t.Fatalf("paced upload %+v, want the digest and count of an unpaced one %+v", info, plain)
	}
	s := idle.Stats()
	// Two passes of > 36 reads each, and the stager's own.
	if s.Yields < uint64(2*(len(csv)/yieldRead)) || s.Pauses != 0 {
		t.Fatalf("idle pacer: %+v, want >= %d yields and no pause", s, 2*(len(csv)/yieldRead))
	}

	busy := pace.New(pace.Config{MaxPause: time.Millisecond})
	busy.Enter() // a read in flight for the whole upload
	defer busy.Exit()
	st := openStore(t)
	svc := newTestService(t, st, WithPacer(busy))
	info = upload(t, svc, csv)
	if info.Digest != plain.Digest {
		t.Fatalf("upload under a read in flight: digest %s, want %s", info.Digest, plain.Digest)
	}
	s = busy.Stats()
	if s.Pauses == 0 || s.Pauses != s.Yields || s.Paused < time.Duration(s.Pauses)*time.Millisecond {
		t.Fatalf("busy pacer: %+v, want every yield to pause for >= 1ms", s)
	}

	ctx := context.Background()
	if _, _, err := svc.Publish(ctx, incident, info.Version, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	before := busy.Stats().Yields
	rb, _, err := svc.Rollback(ctx, incident, info.Version, info.Version, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Digest != plain.Digest || busy.Stats().Yields == before {
		t.Fatalf("rollback copy: digest %s (want %s), %d yields", rb.Digest, plain.Digest, busy.Stats().Yields-before)
	}
}
