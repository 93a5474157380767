package storetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// testStageYields: a Stager calls StageRequest.Yield between units of its
// work (how often is the engine's), the load is the same as without it, and
// an error from Yield stops the load with that error.
func testStageYields(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "stage-yields"
	m := manifest(inc, 3)
	entries := newKeyGen(31).entries(5000, m)

	var calls atomic.Int64
	req := stageReq(inc)
	req.Yield = func(ctx context.Context) error {
		calls.Add(1)
		return ctx.Err()
	}
	st, err := s.Stage(ctx, req)
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	put(t, st, entries, 500)
	info, err := st.Commit(ctx, m, Digest(t, m, entries), uint64(len(entries)))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if calls.Load() == 0 {
		t.Error("a load of 5000 entries never called StageRequest.Yield")
	}
	if d := diffEntries(scanAll(t, s, inc, info.Version), sortedEntries(entries)); d != "" {
		t.Errorf("entries loaded with Yield: %s", d)
	}

	errYield := errors.New("yield refused")
	req.Yield = func(context.Context) error { return errYield }
	st, err = s.Stage(ctx, req)
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
