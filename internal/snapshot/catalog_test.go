package snapshot

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// countingStore counts Version calls and can hold them until released.
type countingStore struct {
	store.Store
	calls   atomic.Int32
	entered chan struct{} // if set, receives one value per call
	release chan struct{} // if set, calls wait for it (or their context)
	spec    []byte        // if set, replaces the manifest's spec
}

func (c *countingStore) Version(ctx context.Context, inc string, v uint64) (store.VersionInfo, store.Manifest, error) {
	c.calls.Add(1)
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.release != nil {
		select {
		case <-c.release:
		case <-ctx.Done():
			return store.VersionInfo{}, store.Manifest{}, ctx.Err()
		}
	}
	info, m, err := c.Store.Version(ctx, inc, v)
	if c.spec != nil {
		m.Spec = c.spec
	}
	return info, m, err
}

func TestCatalogCachesPublishedOnly(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	upload(t, svc, header+"p1,affected,northland,\n")
	cs := &countingStore{Store: st}
	c := NewCatalog(cs, 4)

	for range 2 {
		v, err := c.Get(ctx, incident, 1)
		if err != nil {
			t.Fatal(err)
		}
		if v.Info.State != store.StateStaged || v.Spec == nil || v.Spec.Incident.ID != incident {
			t.Fatalf("version %+v", v)
		}
	}
	if n := cs.calls.Load(); n != 2 {
		t.Errorf("%d store calls for a staged version read twice, want 2 (not cached)", n)
	}
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		v, err := c.Get(ctx, incident, 1)
		if err != nil {
			t.Fatal(err)
		}
		if v.Info.State != store.StatePublished {
			t.Fatalf("state %s after publish: the catalog served a stale state", v.Info.State)
		}
	}
	if n := cs.calls.Load(); n != 3 {
		t.Errorf("%d store calls, want 3 (a published version is cached)", n)
	}
	if hits, misses := c.Stats(); hits != 2 || misses != 3 {
		t.Errorf("stats: %d hits, %d misses; want 2, 3", hits, misses)
	}
}

func TestCatalogEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	for v := uint64(1); v <= 3; v++ {
		upload(t, svc, header+"p1,affected,northland,\n")
		if _, _, err := svc.Publish(ctx, incident, v, v-1, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Store: st}
	c := NewCatalog(cs, 2)
	get := func(v uint64) {
		t.Helper()
		if _, err := c.Get(ctx, incident, v); err != nil {
			t.Fatal(err)
		}
	}
	get(1)
	get(2)
	get(1) // 1 is now the most recent
	get(3) // evicts 2
	if n := cs.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	get(1)
	get(3)
	if n := cs.calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3: versions 1 and 3 should be cached", n)
	}
	get(2)
	if n := cs.calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4: version 2 should have been evicted", n)
	}
}

func TestCatalogConcurrentGetsShareOneLoad(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	upload(t, svc, header+"p1,affected,northland,\n")
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st, entered: make(chan struct{}, 100), release: make(chan struct{})}
	c := NewCatalog(cs, 0)
	var wg sync.WaitGroup
	results := make([]*Version, 20)
	for i := range results {
		wg.Go(func() {
			v, err := c.Get(ctx, incident, 1)
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	<-cs.entered
	close(cs.release)
	wg.Wait()
	if n := cs.calls.Load(); n != 1 {
		t.Errorf("%d store calls for 20 concurrent reads of a published version, want 1", n)
	}
	for _, v := range results {
		if v != results[0] {
			t.Fatal("readers got different *Version values")
		}
	}
}

// TestCatalogWaiterOutlivesCanceledLoader: a load that failed because its
// own caller gave up is retried for a waiter that did not.
func TestCatalogWaiterOutlivesCanceledLoader(t *testing.T) {
	st := openStore(t)
	svc := newTestService(t, st)
	upload(t, svc, header+"p1,affected,northland,\n")
	cs := &countingStore{Store: st, entered: make(chan struct{}, 100), release: make(chan struct{})}
	c := NewCatalog(cs, 0)

	ctx1, cancel := context.WithCancel(context.Background())
	done1 := make(chan error)
	go func() {
		_, err := c.Get(ctx1, incident, 1)
		done1 <- err
	}()
	<-cs.entered // the first caller is loading
	done2 := make(chan error)
	go func() {
		_, err := c.Get(context.Background(), incident, 1)
		done2 <- err
	}()
	cancel()
	if err := <-done1; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	<-cs.entered // the second caller loads again
	close(cs.release)
	if err := <-done2; err != nil {
		t.Errorf("second caller: %v, want success", err)
	}
}

func TestCatalogErrors(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	c := NewCatalog(st, 0)
	if _, err := c.Get(ctx, incident, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown incident: %v, want ErrNotFound", err)
	}
	upload(t, newTestService(t, st), header+"p1,affected,northland,\n")
	if _, err := c.Get(ctx, incident, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown version: %v, want ErrNotFound", err)
	}
	bad := NewCatalog(&countingStore{Store: st, spec: []byte(`{"incident":{}}`)}, 0)
	if _, err := bad.Get(ctx, incident, 1); !errors.Is(err, store.ErrVerify) {
		t.Errorf("undecodable manifest spec: %v, want ErrVerify", err)
	}
}
