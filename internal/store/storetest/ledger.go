package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

func testReadView(t *testing.T, s store.Store) {
	const inc = "read-view"
	m := manifest(inc, 2)
	g := newKeyGen(90)
	e1 := g.entries(40, m)
	absent := g.key()
	Load(t, s, inc, m, e1, 40)
	if v := Read(t, s, inc, e1[0].Key, nil); v != (store.View{}) {
		t.Errorf("before any publish: %+v, want the zero view", v)
	}
	Publish(t, s, inc, 1, 0)
	if v := Read(t, s, inc, absent, nil); v.Visible != 1 || v.Record != (store.Record{}) || v.Pin != nil || v.Replay != nil {
		t.Errorf("absent subject: %+v, want visible 1, not affected", v)
	}
	idem := g.idem()
	if v := Read(t, s, inc, e1[1].Key, &idem); v.Visible != 1 || v.Record != e1[1].Record || v.Replay != nil {
		t.Errorf("present subject with an unused idempotency key: %+v", v)
	}
	// A subject dropped in v2 reads NotAffected at v2; its pin stays.
	p := PinAt(1, e1[2].Record, "notice-1")
	if err := s.ClaimPin(context.Background(), inc, e1[2].Key, nil, p, idem); err != nil {
		t.Fatal(err)
	}
	Load(t, s, inc, m, e1[3:], 40)
	Publish(t, s, inc, 2, 1)
	v := Read(t, s, inc, e1[2].Key, nil)
	if v.Visible != 2 || v.Record != (store.Record{}) || !samePin(v.Pin, &p) || v.Replay != nil {
		t.Errorf("dropped, pinned subject: %+v pin %s, want visible 2, not affected, pin %s", v, fmtPin(v.Pin), fmtPin(&p))
	}
}

func testPins(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "pins"
	m := manifest(inc, 2)
	g := newKeyGen(110)
	e := g.entries(5, m)
	Load(t, s, inc, m, e, 5)
	Load(t, s, inc, m, e[1:], 5)
	Load(t, s, inc, m, e, 5)
	Publish(t, s, inc, 3, 0)
	key := e[0].Key

	p2 := PinAt(2, store.Record{}, "notice-v2") // a correction: not affected at v2
	p3 := PinAt(3, e[0].Record, "notice-v3")
	p1 := PinAt(1, e[0].Record, "notice-v1")
	steps := []struct {
		name string
		old  *store.Pin
		next store.Pin
		want error
		pin  *store.Pin // the pin after the step
	}{
		{"claim with an old pin when there is none", &p1, p2, store.ErrConflict, nil},
		{"first claim", nil, p2, nil, &p2},
		{"claim with none when there is one", nil, p3, store.ErrConflict, &p2},
		{"claim with a stale old pin", &p1, p3, store.ErrConflict, &p2},
		{"backwards", &p2, p1, store.ErrConflict, &p2},
		{"forward", &p2, p3, nil, &p3},
		{"old pin compared by notice id", &store.Pin{NoticeID: p2.NoticeID, Version: 3}, p1, store.ErrConflict, &p3},
		{"same version again, old given by notice id only", &store.Pin{NoticeID: p3.NoticeID}, PinAt(3, store.Record{Status: store.UnderReview, Cohorts: 2}, "notice-v3b"), nil, nil},
	}
	for i, step := range steps {
		err := s.ClaimPin(ctx, inc, key, step.old, step.next, g.idem())
		if step.want == nil && err != nil {
			t.Fatalf("step %d (%s): %v", i, step.name, err)
		}
		if step.want != nil {
			wantErr(t, fmt.Sprintf("step %d (%s)", i, step.name), err, step.want)
		}
		want := step.pin
		if want == nil && step.want == nil {
			want = &step.next
		}
		if v := Read(t, s, inc, key, nil); !samePin(v.Pin, want) {
			t.Fatalf("step %d (%s): pin %s, want %s", i, step.name, fmtPin(v.Pin), fmtPin(want))
		}
	}
	// Other subjects are unaffected.
	if v := Read(t, s, inc, e[1].Key, nil); v.Pin != nil {
		t.Errorf("another subject has pin %s", fmtPin(v.Pin))
	}
	// Pins are per incident.
	Load(t, s, "pins-other", m, e, 5)
	Publish(t, s, "pins-other", 1, 0)
	if v := Read(t, s, "pins-other", key, nil); v.Pin != nil {
		t.Errorf("pin leaked into another incident: %s", fmtPin(v.Pin))
	}
}

func testIdempotentReplay(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "idem"
	m := manifest(inc, 1)
	g := newKeyGen(120)
	e := g.entries(3, m)
	Load(t, s, inc, m, e, 3)
	Publish(t, s, inc, 1, 0)
	Load(t, s, inc, m, e, 3)
	Publish(t, s, inc, 2, 1)

	a, b, unused := g.idem(), g.idem(), g.idem()
	p1 := PinAt(1, e[0].Record, "n-1")
	p2 := PinAt(2, e[0].Record, "n-2")
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, p1, a); err != nil {
		t.Fatal(err)
	}
	v := Read(t, s, inc, e[0].Key, &a)
	if !samePin(v.Replay, &p1) || !samePin(v.Pin, &p1) {
		t.Fatalf("replay %s pin %s, want both %s", fmtPin(v.Replay), fmtPin(v.Pin), fmtPin(&p1))
	}
	// A conflicting claim records nothing under its key.
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, p2, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("conflicting claim: %v", err)
	}
	if v := Read(t, s, inc, e[0].Key, &b); v.Replay != nil {
		t.Errorf("a failed claim left replay %s", fmtPin(v.Replay))
	}
	if err := s.ClaimPin(ctx, inc, e[0].Key, &p1, p2, b); err != nil {
		t.Fatal(err)
	}
	// Each key replays its own claim; the pin is the latest.
	for _, c := range []struct {
		idem   store.IdemKey
		replay *store.Pin
	}{{a, &p1}, {b, &p2}, {unused, nil}} {
		v := Read(t, s, inc, e[0].Key, &c.idem)
		if !samePin(v.Replay, c.replay) || !samePin(v.Pin, &p2) {
			t.Errorf("idem %x: replay %s pin %s, want replay %s pin %s", c.idem[:4], fmtPin(v.Replay), fmtPin(v.Pin), fmtPin(c.replay), fmtPin(&p2))
		}
	}
	if v := Read(t, s, inc, e[0].Key, nil); v.Replay != nil {
		t.Errorf("replay without an idempotency key: %s", fmtPin(v.Replay))
	}
	// An idempotency key never replays another subject's claim.
	if v := Read(t, s, inc, e[1].Key, &a); v.Replay != nil || v.Pin != nil {
		t.Errorf("subject 1 with subject 0's idempotency key: replay %s pin %s", fmtPin(v.Replay), fmtPin(v.Pin))
	}
}

func testPinsIteration(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "pins-list"
	m := manifest(inc, 2)
	g := newKeyGen(130)
	e := g.entries(5000, m)
	Load(t, s, inc, m, e, 1000)
	Publish(t, s, inc, 1, 0)
	none := 0
	if err := s.Pins(ctx, inc, func(store.Key, store.Pin) error { none++; return nil }); err != nil || none != 0 {
		t.Fatalf("pins before any claim: %d, %v", none, err)
	}
	want := map[store.Key]store.Pin{}
	for i, en := range e {
		if i%3 == 0 {
			want[en.Key] = PinAt(1, en.Record, fmt.Sprintf("n-%d", i))
		}
	}
	// Claimed by a few workers at once, as a notifier does.
	work := make(chan store.Key)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := range work {
				if err := s.ClaimPin(ctx, inc, k, nil, want[k], workerIdem(w, int64(k[0])<<8|int64(k[1]))); err != nil {
					t.Errorf("claim: %v", err)
				}
			}
		})
	}
	for k := range want {
		work <- k
	}
	close(work)
	wg.Wait()
	got := map[store.Key]store.Pin{}
	err := s.Pins(ctx, inc, func(k store.Key, p store.Pin) error {
		if _, dup := got[k]; dup {
			return fmt.Errorf("pin %x listed twice", k)
		}
		got[k] = p
		if len(got)%500 == 0 { // a callback may call the store
			if v, err := s.Read(ctx, inc, k, nil); err != nil || !samePin(v.Pin, &p) {
				return fmt.Errorf("read inside pins iteration: %s, %v", fmtPin(v.Pin), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d pins listed, want %d", len(got), len(want))
	}
	for k, p := range want {
		if g, ok := got[k]; !ok || !samePin(&g, &p) {
			t.Fatalf("pin %x: got %s, want %s", k, fmtPin(&g), fmtPin(&p))
		}
	}
	stop := errors.New("stop")
	n := 0
	err = s.Pins(ctx, inc, func(store.Key, store.Pin) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("stopping pins iteration: %v after %d calls, want the callback's error after 10", err, n)
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "race-claims"
	m := manifest(inc, 2)
	g := newKeyGen(140)
	e := g.entries(10, m)
	Load(t, s, inc, m, e, 10)
	Publish(t, s, inc, 1, 0)
	Load(t, s, inc, m, e, 10)
	Publish(t, s, inc, 2, 1)
	key := e[0].Key

	const n = 16
	idems := make([]store.IdemKey, 2*n)
	for i := range idems {
		idems[i] = g.idem()
	}
	round := func(old *store.Pin, version uint64, base int) *store.Pin {
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.ClaimPin(ctx, inc, key, old, PinAt(version, e[0].Record, fmt.Sprintf("n-%d", base+i)), idems[base+i])
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("claims %d and %d both won", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("claim %d: %v, want nil or ErrConflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no claim won")
		}
		want := PinAt(version, e[0].Record, fmt.Sprintf("n-%d", base+winner))
		for i := range n {
			v := Read(t, s, inc, key, &idems[base+i])
			if !samePin(v.Pin, &want) {
				t.Fatalf("pin %s, want the winner's %s", fmtPin(v.Pin), fmtPin(&want))
			}
			if i == winner && !samePin(v.Replay, &want) {
				t.Errorf("winner's replay %s", fmtPin(v.Replay))
			}
			if i != winner && v.Replay != nil {
				t.Errorf("loser %d has replay %s", i, fmtPin(v.Replay))
			}
		}
		return &want
	}
	w := round(nil, 1, 0)
	round(w, 2, n)
}

func testClaimsRacingPublish(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "race-publish"
	m := manifest(inc, 2)
	g := newKeyGen(150)
	keys := g.keys(48)
	r1 := store.Record{Status: store.Affected, Cohorts: 1, Practice: 1}
	r2 := store.Record{Status: store.UnderReview, Cohorts: 2, Practice: 2}
	e1 := withRecord(keys[:40], r1) // keys[40:] not affected at v1
	e2 := withRecord(keys[8:], r2)  // keys[:8] not affected at v2
	rec := func(ver uint64, i int) store.Record {
		switch {
		case ver == 1 && i < 40:
			return r1
		case ver == 2 && i >= 8:
			return r2
		}
		return store.Record{}
	}
	Load(t, s, inc, m, e1, 48)
	Publish(t, s, inc, 1, 0)
	Load(t, s, inc, m, e2, 48)

	type claim struct {
		version uint64
		notice  string
	}
	var (
		mu       sync.Mutex
		won      = make([][]claim, len(keys))
		done     atomic.Bool
		seq      atomic.Int64
		wg       sync.WaitGroup
		workers  = 6
		roundsAf = 2
	)
	for w := range workers {
		wg.Go(func() {
			after := 0
			for after < roundsAf {
				if done.Load() {
					after++
				}
				for i, k := range keys {
					v, err := s.Read(ctx, inc, k, nil)
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					if v.Visible < 1 || v.Visible > 2 || v.Record != rec(v.Visible, i) {
						t.Errorf("inconsistent view of subject %d: visible %d record %+v", i, v.Visible, v.Record)
						return
					}
					due := v.Pin == nil && v.Record.Status != store.NotAffected ||
						v.Pin != nil && v.Pin.Version < v.Visible && v.Pin.Record != v.Record
					if !due {
						continue
					}
					n := seq.Add(1)
					notice := fmt.Sprintf("w%d-%d", w, n)
					err = s.ClaimPin(ctx, inc, k, v.Pin, PinAt(v.Visible, v.Record, notice), workerIdem(w, n))
					switch {
					case err == nil:
						mu.Lock()
						won[i] = append(won[i], claim{v.Visible, notice})
						mu.Unlock()
					case !errors.Is(err, store.ErrConflict):
						t.Errorf("claim: %v", err)
						return
					}
				}
			}
		})
	}
	Publish(t, s, inc, 2, 1)
	done.Store(true)
	wg.Wait()

	for i, k := range keys {
		v := Read(t, s, inc, k, nil)
		var maxV uint64
		notices := map[string]uint64{}
		for _, c := range won[i] {
			maxV = max(maxV, c.version)
			notices[c.notice] = c.version
		}
		if len(won[i]) == 0 {
			if v.Pin != nil {
				t.Errorf("subject %d: pin %s but no claim won", i, fmtPin(v.Pin))
			}
			continue
		}
		if v.Pin == nil {
			t.Errorf("subject %d: claims won %v but no pin", i, won[i])
			continue
		}
		if ver, ok := notices[v.Pin.NoticeID]; !ok || ver != v.Pin.Version {
			t.Errorf("subject %d: pin %s is not one of the claims that won", i, fmtPin(v.Pin))
		}
		if v.Pin.Version != maxV {
			t.Errorf("subject %d: pin at v%d, but a claim at v%d won (pins only move forward)", i, v.Pin.Version, maxV)
		}
		if v.Pin.Record != rec(v.Pin.Version, i) {
			t.Errorf("subject %d: pin record %+v differs from its version's record %+v", i, v.Pin.Record, rec(v.Pin.Version, i))
		}
	}
}
