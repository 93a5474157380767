package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/impact-health/impact/internal/store"
)

// FeedEngine is an engine that is also a store.Feed: what package
// store/replica decorates.
type FeedEngine interface {
	store.Store
	store.Feed
}

// feedLog is the change log the suite asks for, except where it tests
// trimming: larger than anything a subtest writes.
const feedLog = 10_000

// RunFeedConformance runs the suite of the store.Feed semantics that
// package store/replica relies on:
//   - every successful write that a replica answers from (a claim, a
//     publish, a commit, a first tombstone, a deletion) appends exactly one
//     change, numbered 1, 2, 3... with no gap; a refused write appends
//     nothing; and the log's order is the commit order (a claim at a
//     version follows that version's commit; per subject, the last change
//     is the pin the store holds);
//   - Changes waits up to its block duration for the next change, wakes
//     when one is appended, honours its context's deadline, and its
//     cursor continues exactly after the last change returned; FeedTail's
//     cursor reads what comes after the tail;
//   - a stream trimmed past a reader's cursor shows as a gap in the
//     sequence numbers, never as missing changes with contiguous numbers;
//   - leases run on the engine's clock: a renewal tells whether the entry
//     was live and serving just before (Continuous), ReplicaAcks counts the
//     live serving entries and their lowest acknowledgement and drops the
//     expired ones, an acknowledgement only raises a live entry's;
//   - Tombstones lists every tombstoned key; after Close the feed fails
//     with ErrUnavailable, and a Changes call waiting returns.
//
// open must return a fresh, empty engine whose stream keeps at least
// changeLog changes (and, about, no more), and close it with t.Cleanup
// (Close may be called twice). Subtests run one after the other.
func RunFeedConformance(t *testing.T, open func(t *testing.T, changeLog int) FeedEngine) {
	tests := []struct {
		name string
		log  int
		fn   func(t *testing.T, f FeedEngine)
	}{
		{"ChangePerWrite", feedLog, testFeedChangePerWrite},
		{"CommitOrder", feedLog, testFeedCommitOrder},
		{"BlockAndWake", feedLog, testFeedBlockAndWake},
		{"CursorContinuation", feedLog, testFeedCursor},
		{"TrimmedIsAGap", 1000, testFeedTrimmed},
		{"Leases", feedLog, testFeedLeases},
		{"RenewalOrder", feedLog, testFeedRenewalOrder},
		{"Tombstones", feedLog, testFeedTombstones},
		{"Closed", feedLog, testFeedClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := open(t, tc.log)
			if f == nil {
				t.Fatal("open returned a nil engine")
			}
			tc.fn(t, f)
		})
	}
}

func feedTail(t *testing.T, f store.Feed) (uint64, store.FeedCursor) {
	t.Helper()
	n, c, err := f.FeedTail(context.Background())
	if err != nil {
		t.Fatalf("feed tail: %v", err)
	}
	return n, c
}

// allChanges reads every change after cursor without waiting, in batches
// of batch.
func allChanges(t *testing.T, f store.Feed, after store.FeedCursor, batch int) []store.Change {
	t.Helper()
	var out []store.Change
	for {
		cs, next, err := f.Changes(context.Background(), after, 0, batch)
		if err != nil {
			t.Fatalf("changes after %q: %v", after, err)
		}
		if len(cs) == 0 {
			return out
		}
		if len(cs) > batch {
			t.Fatalf("changes returned %d, more than the %d asked for", len(cs), batch)
		}
		out, after = append(out, cs...), next
	}
}

// checkSequence fails t unless cs are numbered from first with no gap.
func checkSequence(t *testing.T, cs []store.Change, first uint64) {
	t.Helper()
	for i, c := range cs {
		if c.Seq != first+uint64(i) {
			t.Fatalf("change %d has sequence %d, want %d (numbers must follow each other)", i, c.Seq, first+uint64(i))
		}
	}
}

func sameChange(got, want store.Change) bool {
	if got.Kind != want.Kind || got.Incident != want.Incident || got.Key != want.Key || got.Version != want.Version {
		return false
	}
	if want.Kind == store.ChangePin {
		return samePin(&got.Pin, &want.Pin)
	}
	return true
}

func fmtChange(c store.Change) string {
	s := fmt.Sprintf("#%d %s %q v%d", c.Seq, c.Kind, c.Incident, c.Version)
	if c.Key != (store.Key{}) {
		s += fmt.Sprintf(" key %x", c.Key[:4])
	}
	if c.Kind == store.ChangePin {
		s += " pin " + fmtPin(&c.Pin)
	}
	return s
}

// testFeedChangePerWrite: one change per successful write, with what it
// did; none for a refused one.
func testFeedChangePerWrite(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	const inc = "feed-writes"
	m := manifest(inc, 2)
	g := newKeyGen(700)
	es := g.entries(20, m)
	k1, k2 := es[0].Key, es[1].Key

	if n, _ := feedTail(t, f); n != 0 {
		t.Fatalf("fresh engine: tail %d, want 0", n)
	}
	if cs, _, err := f.Changes(ctx, "", 0, 10); err != nil || len(cs) != 0 {
		t.Fatalf("fresh engine: changes %v, %v; want none", cs, err)
	}
	var want []store.Change
	step := func(what string, err error, ok bool, c store.Change) {
		t.Helper()
		if ok && err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !ok && err == nil {
			t.Fatalf("%s: succeeded, want it refused", what)
		}
		if ok && c.Kind != 0 {
			want = append(want, c)
		}
		if n, _ := feedTail(t, f); n != uint64(len(want)) {
			t.Fatalf("after %s: tail %d, want %d", what, n, len(want))
		}
	}

	st, err := f.Stage(ctx, stageReq(inc))
	step("stage", err, true, store.Change{})
	put(t, st, es, 0)
	step("put", nil, true, store.Change{})
	_, err = st.Commit(ctx, m, store.Digest{}, uint64(len(es)))
	step("commit with a wrong digest", err, false, store.Change{})
	Load(t, f, inc, m, es, 0)
	step("commit v2", nil, true, store.Change{Kind: store.ChangeStaged, Incident: inc, Version: 2})
	_, err = f.Publish(ctx, store.PublishRequest{Incident: inc, Version: 1, ExpectVisible: 0, Actor: "ops", At: T0})
	step("publish of aborted v1", err, false, store.Change{})
	_, err = f.Publish(ctx, store.PublishRequest{Incident: inc, Version: 2, ExpectVisible: 0, Actor: "ops", At: T0})
	step("publish v2", err, true, store.Change{Kind: store.ChangePublish, Incident: inc, Version: 2})
	_, err = f.Publish(ctx, store.PublishRequest{Incident: inc, Version: 2, ExpectVisible: 0, Actor: "ops", At: T0})
	step("publish v2 again (stale expectation)", err, false, store.Change{})

	p1 := PinAt(2, es[0].Record, "feed-n1")
	err = f.ClaimPin(ctx, inc, k1, nil, p1, g.idem())
	step("claim", err, true, store.Change{Kind: store.ChangePin, Incident: inc, Key: k1, Version: 2, Pin: p1})
	err = f.ClaimPin(ctx, inc, k1, nil, PinAt(2, es[0].Record, "feed-n2"), g.idem())
	step("claim over a pin it did not expect", err, false, store.Change{})
	err = f.ClaimPin(ctx, inc, k2, nil, PinAt(99, es[1].Record, "feed-n3"), g.idem())
	step("claim at a version never allocated", err, false, store.Change{})

	Load(t, f, inc, m, es[1:], 0)
	step("commit v3", nil, true, store.Change{Kind: store.ChangeStaged, Incident: inc, Version: 3})
	Publish(t, f, inc, 3, 2)
	step("publish v3", nil, true, store.Change{Kind: store.ChangePublish, Incident: inc, Version: 3})
	step("delete of pinned v2", f.DeleteVersion(ctx, inc, 2), false, store.Change{})
	step("delete of visible v3", f.DeleteVersion(ctx, inc, 3), false, store.Change{})
	p2 := PinAt(3, store.Record{}, "feed-n4") // a correction: k1 is not in v3
	err = f.ClaimPin(ctx, inc, k1, &p1, p2, g.idem())
	step("claim of a correction", err, true, store.Change{Kind: store.ChangePin, Incident: inc, Key: k1, Version: 3, Pin: p2})
	step("delete v2", f.DeleteVersion(ctx, inc, 2), true, store.Change{Kind: store.ChangeDeleted, Incident: inc, Version: 2})

	_, err = f.Tombstone(ctx, k1)
	step("tombstone", err, true, store.Change{Kind: store.ChangeTombstone, Key: k1})
	_, err = f.Tombstone(ctx, k1)
	step("tombstone again", err, true, store.Change{}) // nothing new to tell
	err = f.ClaimPin(ctx, inc, k1, nil, PinAt(3, store.Record{}, "feed-n5"), g.idem())
	step("claim for a closed account", err, false, store.Change{})
	step("audit event", f.AppendAudit(ctx, auditEvent(1, inc)), true, store.Change{})

	got := allChanges(t, f, "", 3)
	if len(got) != len(want) {
		for _, c := range got {
			t.Log(fmtChange(c))
		}
		t.Fatalf("%d changes, want %d", len(got), len(want))
	}
	checkSequence(t, got, 1)
	for i := range want {
		if !sameChange(got[i], want[i]) {
			t.Errorf("change %d: %s, want %s", i, fmtChange(got[i]), fmtChange(want[i]))
		}
	}
}

// testFeedCommitOrder: racing claims and publishes append one change each,
// in the order they committed.
func testFeedCommitOrder(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	const inc = "feed-order"
	m := manifest(inc, 2)
	g := newKeyGen(710)
	es := g.entries(50, m)
	hot := []store.Key{es[0].Key, es[1].Key, es[2].Key}
	Load(t, f, inc, m, es, 0)
	Publish(t, f, inc, 1, 0)
	var writes atomic.Int64
	writes.Add(2)
	claims := make([]atomic.Int64, len(hot))

	var eg errgroup.Group
	eg.Go(func() error { // publishes v2..v4 while the claims run
		for v := uint64(2); v <= 4; v++ {
			if err := loadPublish(ctx, f, inc, m, es, v-1); err != nil {
				return err
			}
			writes.Add(2)
		}
		return nil
	})
	for w := 0; w < 6; w++ {
		eg.Go(func() error {
			for n := int64(0); n < 30; n++ {
				i := int(n+int64(w)) % len(hot)
				v, err := f.Read(ctx, inc, hot[i], nil)
				if err != nil {
					return err
				}
				next := PinAt(v.Visible, es[i].Record, fmt.Sprintf("order-%d-%d", w, n))
				err = f.ClaimPin(ctx, inc, hot[i], v.Pin, next, workerIdem(w, n))
				switch {
				case err == nil:
					writes.Add(1)
					claims[i].Add(1)
				case errors.Is(err, store.ErrConflict):
				default:
					return err
				}
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		t.Fatal(err)
	}

	got := allChanges(t, f, "", 1000)
	if tail, _ := feedTail(t, f); len(got) != int(writes.Load()) || tail != uint64(len(got)) {
		t.Fatalf("%d changes, tail %d, after %d successful writes: want one change per write", len(got), tail, writes.Load())
	}
	checkSequence(t, got, 1)
	staged := map[uint64]bool{}
	lastPin := map[store.Key]store.Change{}
	perKey := map[store.Key]int64{}
	var visible uint64
	for _, c := range got {
		switch c.Kind {
		case store.ChangeStaged:
			staged[c.Version] = true
		case store.ChangePublish:
			if !staged[c.Version] || c.Version <= visible {
				t.Fatalf("%s: a publish before its commit, or not after the visible v%d", fmtChange(c), visible)
			}
			visible = c.Version
		case store.ChangePin:
			if !staged[c.Version] {
				t.Fatalf("%s: a claim before its version's commit (log order is not commit order)", fmtChange(c))
			}
			if prev, ok := lastPin[c.Key]; ok && c.Version < prev.Version {
				t.Fatalf("%s after %s: a pin moved back (log order is not commit order)", fmtChange(c), fmtChange(prev))
			}
			lastPin[c.Key] = c
			perKey[c.Key]++
		default:
			t.Fatalf("unexpected %s", fmtChange(c))
		}
	}
	if h, err := f.Head(ctx, inc); err != nil || h.Visible != visible {
		t.Fatalf("head %+v (%v); the last publish in the log is v%d", h, err, visible)
	}
	for i, k := range hot {
		v := Read(t, f, inc, k, nil)
		last := lastPin[k]
		if perKey[k] != claims[i].Load() || !samePin(v.Pin, &last.Pin) {
			t.Errorf("subject %d: %d pin changes for %d claims; last %s, store holds %s", i, perKey[k], claims[i].Load(), fmtChange(last), fmtPin(v.Pin))
		}
	}
}

// loadPublish stages, loads and commits entries, and publishes them over
// the visible version expect, reporting errors instead of failing a test
// (it runs on goroutines of its own).
func loadPublish(ctx context.Context, f store.Versions, incident string, m store.Manifest, es []store.Entry, expect uint64) error {
	st, err := f.Stage(ctx, stageReq(incident))
	if err != nil {
		return err
	}
	if err := st.Put(ctx, es); err != nil {
		return err
	}
	d := store.NewDigester(m.Practices)
	for _, e := range es {
		if err := d.Add(e); err != nil {
			return err
		}
	}
	vi, err := st.Commit(ctx, m, d.Sum(m.Spec), uint64(len(es)))
	if err != nil {
		return err
	}
	_, err = f.Publish(ctx, store.PublishRequest{Incident: incident, Version: vi.Version, ExpectVisible: expect, Actor: "ops", At: T0})
	return err
}

// claimN makes n claims of distinct subjects at version, from 32 workers
// (so that an engine that groups commits writes few transactions).
func claimN(t *testing.T, f store.Ledger, incident string, version uint64, n int, seed uint64) {
	t.Helper()
	const workers = 32
	keys := newKeyGen(seed).keys(n)
	var g errgroup.Group
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			for i := w; i < n; i += workers {
				p := PinAt(version, store.Record{Status: store.Affected, Cohorts: 1}, fmt.Sprintf("c%d-%d", seed, i))
				if err := f.ClaimPin(context.Background(), incident, keys[i], nil, p, workerIdem(w, int64(i))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// loadOne stages and publishes a one-entry version 1 of incident.
func loadOne(t *testing.T, f store.Versions, incident string) {
	t.Helper()
	m := manifest(incident, 1)
	Load(t, f, incident, m, newKeyGen(1).entries(1, m), 0)
	Publish(t, f, incident, 1, 0)
}

// testFeedBlockAndWake: Changes waits for the next change and wakes when
// it is appended; it returns empty when its block ends, and with an error
// when its context's deadline passes.
func testFeedBlockAndWake(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	const inc = "feed-block"
	loadOne(t, f, inc)
	_, cur := feedTail(t, f)

	cs, next, err := f.Changes(ctx, cur, 50*time.Millisecond, 10)
	if err != nil || len(cs) != 0 {
		t.Fatalf("changes with nothing new: %v, %v; want none, no error", cs, err)
	}
	if next != cur {
		// Nothing read: the cursor stays put, whatever its spelling.
		if more := allChanges(t, f, next, 10); len(more) != 0 {
			t.Fatalf("cursor returned with no change moved: %d changes after it", len(more))
		}
	}

	type result struct {
		cs  []store.Change
		err error
	}
	woke := make(chan result, 1)
	go func() {
		cs, _, err := f.Changes(ctx, cur, time.Minute, 10)
		woke <- result{cs, err}
	}()
	time.Sleep(20 * time.Millisecond) // let it block (the outcome is the same if it did not yet)
	claimN(t, f, inc, 1, 1, 720)
	select {
	case r := <-woke:
		if r.err != nil || len(r.cs) != 1 || r.cs[0].Kind != store.ChangePin || r.cs[0].Seq != 3 {
			t.Fatalf("waiting changes woke with %d changes (%v), want the claim, #3", len(r.cs), r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting Changes did not wake when a change was appended")
	}

	_, cur = feedTail(t, f)
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := f.Changes(dctx, cur, time.Minute, 10)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("changes past its context's deadline: %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting Changes did not return when its context's deadline passed")
	}
}

// testFeedCursor: a cursor continues right after the last change returned,
// and FeedTail's cursor reads what comes after the tail.
func testFeedCursor(t *testing.T, f FeedEngine) {
	const inc = "feed-cursor"
	loadOne(t, f, inc) // #1 staged, #2 publish
	claimN(t, f, inc, 1, 5, 730)
	tail, tailCur := feedTail(t, f)
	if tail != 7 {
		t.Fatalf("tail %d after 7 writes", tail)
	}
	var seqs []uint64
	cur := store.FeedCursor("")
	for i := 0; i < 10; i++ {
		cs, next, err := f.Changes(context.Background(), cur, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			break
		}
		if len(cs) > 2 {
			t.Fatalf("%d changes for at most 2", len(cs))
		}
		for _, c := range cs {
			seqs = append(seqs, c.Seq)
		}
		cur = next
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5 6 7]" {
		t.Fatalf("read two at a time: %v, want 1 to 7 once each", seqs)
	}
	if cs := allChanges(t, f, tailCur, 10); len(cs) != 0 {
		t.Fatalf("%d changes after the tail's cursor before any write", len(cs))
	}
	claimN(t, f, inc, 1, 1, 731)
	cs := allChanges(t, f, tailCur, 10)
	if len(cs) != 1 || cs[0].Seq != 8 {
		t.Fatalf("after one more write, the tail's cursor reads %d changes, want #8", len(cs))
	}
	if more := allChanges(t, f, cur, 10); len(more) != 1 || more[0].Seq != 8 {
		t.Fatalf("the cursor of the last read reads %d changes, want #8", len(more))
	}
}

// testFeedTrimmed: a reader behind what the stream keeps sees a gap.
func testFeedTrimmed(t *testing.T, f FeedEngine) {
	const inc = "feed-trim"
	_, start := feedTail(t, f)
	loadOne(t, f, inc)
	const n = 1800 // 1.8 times what the stream keeps
	claimN(t, f, inc, 1, n, 740)
	tail, _ := feedTail(t, f)
	if tail != n+2 {
		t.Fatalf("tail %d after %d writes", tail, n+2)
	}
	for _, cur := range []store.FeedCursor{"", start} {
		cs := allChanges(t, f, cur, 4096)
		if len(cs) == 0 || cs[0].Seq <= 1 {
			t.Fatalf("from %q: the first change read is #%d of %d: the stream was not trimmed, or the gap does not show", cur, firstSeq(cs), tail)
		}
		if len(cs) < 1000 || len(cs) >= n {
			t.Fatalf("from %q: %d changes kept, want at least the 1000 asked for and fewer than the %d written", cur, len(cs), tail)
		}
		checkSequence(t, cs, cs[0].Seq)
		if last := cs[len(cs)-1].Seq; last != tail {
			t.Fatalf("from %q: the last change read is #%d, the tail #%d", cur, last, tail)
		}
	}
}

func firstSeq(cs []store.Change) uint64 {
	if len(cs) == 0 {
		return 0
	}
	return cs[0].Seq
}

// testFeedLeases: the registry on the engine's clock.
func testFeedLeases(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	acks := func(what string, serving int, minAck uint64) {
		t.Helper()
		a, err := f.ReplicaAcks(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		tail, _ := feedTail(t, f)
		if a.Tail != tail || a.Serving != serving || a.MinAck != minAck {
			t.Fatalf("%s: acks %+v, want tail %d, %d serving, lowest ack %d", what, a, tail, serving, minAck)
		}
	}
	renew := func(id string, serving bool, acked uint64, lease time.Duration, continuous bool) {
		t.Helper()
		r, err := f.RenewReplica(ctx, store.ReplicaLease{ID: id, Serving: serving, Acked: acked, Lease: lease})
		if err != nil {
			t.Fatalf("renew %s: %v", id, err)
		}
		tail, _ := feedTail(t, f)
		if r.Tail != tail || r.Continuous != continuous {
			t.Fatalf("renew %s (serving %v): %+v, want tail %d, continuous %v", id, serving, r, tail, continuous)
		}
	}
	ack := func(id string, seq uint64) {
		t.Helper()
		if err := f.AckReplica(ctx, id, seq); err != nil {
			t.Fatalf("ack %s %d: %v", id, seq, err)
		}
	}
	const long = time.Minute

	acks("empty registry", 0, 0)
	loadOne(t, f, "feed-leases")
	acks("no replica: the lowest ack is the tail", 0, 2)

	renew("a", true, 0, long, false) // first join
	renew("a", true, 0, long, true)  // live and serving before
	acks("a serving, acked nothing", 1, 0)
	renew("b", false, 0, long, false)
	acks("b not serving does not count", 1, 0)
	renew("b", true, 0, long, false) // live but not serving before
	renew("b", true, 0, long, true)
	ack("a", 2)
	ack("b", 1)
	acks("a at 2, b at 1", 2, 1)
	ack("b", 0)
	acks("an ack never lowers one", 2, 1)
	ack("b", 2)
	acks("both at the tail", 2, 2)
	ack("ghost", 1)
	acks("an ack of an unknown replica registers nothing", 2, 2)
	renew("a", true, 1, long, true)
	acks("a renewal sets the ack", 2, 1)
	ack("a", 2)

	if err := f.RemoveReplica(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	acks("b removed", 1, 2)
	renew("b", true, 2, long, false) // removed: writers stopped waiting for it

	// c's short lease runs out on the engine's clock.
	t0 := time.Now()
	renew("c", true, 0, time.Second, false)
	if a, err := f.ReplicaAcks(ctx); err == nil && time.Since(t0) < 500*time.Millisecond && (a.Serving != 3 || a.MinAck != 0) {
		t.Fatalf("c live: acks %+v, want 3 serving, lowest ack 0", a)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := f.ReplicaAcks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a.Serving == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c's entry never expired: %+v", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Since(t0) < 900*time.Millisecond { // the engine's clock may count in milliseconds
		t.Fatalf("c's one-second lease expired after %v", time.Since(t0))
	}
	ack("c", 0)
	acks("an expired entry's ack revives nothing", 2, 2)
	renew("c", true, 2, long, false) // expired: writers stopped waiting for it
	renew("c", true, 2, long, true)
	acks("c back", 3, 2)
}

// testFeedTombstones: Tombstones lists every tombstoned key, once.
func testFeedTombstones(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	list := func() map[store.Key]int {
		got := map[store.Key]int{}
		if err := f.Tombstones(ctx, func(k store.Key) error { got[k]++; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("fresh engine lists %d tombstones", len(got))
	}
	keys := newKeyGen(750).keys(100)
	for _, k := range keys {
		if _, err := f.Tombstone(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	got := list()
	if len(got) != len(keys) {
		t.Fatalf("%d tombstones listed, want %d", len(got), len(keys))
	}
	for _, k := range keys {
		if got[k] != 1 {
			t.Fatalf("tombstone %x listed %d times", k[:4], got[k])
		}
	}
	if tail, _ := feedTail(t, f); tail != uint64(len(keys)) {
		t.Fatalf("tail %d after %d tombstones", tail, len(keys))
	}
	stop := errors.New("stop")
	if err := f.Tombstones(ctx, func(store.Key) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Tombstones returned %v, want the callback's error", err)
	}
}

// testFeedClosed: a waiting Changes returns when the engine closes, and
// every feed call fails with ErrUnavailable afterwards.
func testFeedClosed(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	_, cur := feedTail(t, f)
	done := make(chan error, 1)
	go func() {
		_, _, err := f.Changes(ctx, cur, time.Minute, 10)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = f.Close()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("changes waiting at Close: %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting Changes did not return when the engine closed")
	}
	_, err := f.RenewReplica(ctx, store.ReplicaLease{ID: "a", Serving: true, Lease: time.Minute})
	wantErr(t, "renew after close", err, store.ErrUnavailable)
	wantErr(t, "ack after close", f.AckReplica(ctx, "a", 1), store.ErrUnavailable)
	_, err = f.ReplicaAcks(ctx)
	wantErr(t, "acks after close", err, store.ErrUnavailable)
	_, _, err = f.FeedTail(ctx)
	wantErr(t, "tail after close", err, store.ErrUnavailable)
	_, _, err = f.Changes(ctx, cur, 0, 10)
	wantErr(t, "changes after close", err, store.ErrUnavailable)
	wantErr(t, "tombstones after close", f.Tombstones(ctx, func(store.Key) error { return nil }), store.ErrUnavailable)
}

// testFeedRenewalOrder: a renewal numbered below one already applied (one
// delayed on the network) is refused and changes nothing; unnumbered
// renewals are always applied.
func testFeedRenewalOrder(t *testing.T, f FeedEngine) {
	ctx := context.Background()
	renew := func(seq uint64, serving bool) error {
		_, err := f.RenewReplica(ctx, store.ReplicaLease{ID: "r1", Serving: serving, Lease: time.Minute, Seq: seq})
		return err
	}
	if err := renew(5, false); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{4, 5} {
		if err := renew(seq, true); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("renewal %d after 5: %v, want ErrConflict", seq, err)
		}
	}
	if a, err := f.ReplicaAcks(ctx); err != nil || a.Serving != 0 {
		t.Fatalf("after refused renewals: %+v, %v; want the replica still not serving", a, err)
	}
	if err := renew(6, true); err != nil {
		t.Fatal(err)
	}
	if a, err := f.ReplicaAcks(ctx); err != nil || a.Serving != 1 {
		t.Fatalf("after renewal 6: %+v, %v; want 1 serving", a, err)
	}
	if err := renew(0, true); err != nil {
		t.Fatalf("unnumbered renewal: %v", err)
	}
}
