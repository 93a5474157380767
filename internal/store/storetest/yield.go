package storetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// testPacer counts Yields and says it is busy or not; with err set, Yield
// fails.
type testPacer struct {
	yields atomic.Int64
	busy   bool
	err    error
}

func (p *testPacer) Yield(ctx context.Context) error {
	p.yields.Add(1)
	if p.err != nil {
		return p.err
	}
	return ctx.Err()
}

func (p *testPacer) Busy() bool { return p.busy }

// testStagePacer: a Stager yields to StageRequest.Pacer between units of
// its work (how often is the engine's), busy (small units) or not, and the
// load is the same as without one; an error from Yield stops the load with
// that error.
func testStagePacer(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "stage-pacer"
	m := manifest(inc, 3)
	entries := newKeyGen(31).entries(5000, m)
	for _, busy := range []bool{false, true} {
		p := &testPacer{busy: busy}
		req := stageReq(inc)
		req.Pacer = p
		st, err := s.Stage(ctx, req)
		if err != nil {
			t.Fatalf("stage: %v", err)
		}
		put(t, st, entries, 500)
		info, err := st.Commit(ctx, m, Digest(t, m, entries), uint64(len(entries)))
		if err != nil {
			t.Fatalf("busy %v: commit: %v", busy, err)
		}
		if p.yields.Load() == 0 {
			t.Errorf("busy %v: a load of 5000 entries never yielded to its Pacer", busy)
		}
		if d := diffEntries(scanAll(t, s, inc, info.Version), sortedEntries(entries)); d != "" {
			t.Errorf("busy %v: entries loaded with a Pacer: %s", busy, d)
		}
	}

	errYield := errors.New("yield refused")
	req := stageReq(inc)
	req.Pacer = &testPacer{err: errYield}
	st, err := s.Stage(ctx, req)
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	err = nil
	for i := 0; i < len(entries) && err == nil; i += 500 {
		err = st.Put(ctx, entries[i:i+500])
	}
	if err == nil {
		_, err = st.Commit(ctx, m, Digest(t, m, entries), uint64(len(entries)))
	}
	if !errors.Is(err, errYield) {
		t.Fatalf("load whose Yield fails: %v, want the Yield's error", err)
	}
	if err := st.Abort(ctx); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if got := stateOf(t, s, inc, st.Version()); got != store.StateAborted {
		t.Errorf("version whose Yield failed is %s, want aborted", got)
	}
}
