package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Stage leases.
//
// A version being loaded is held by a lease that its loader renews. The
// Stager returned by Stage renews it in the background, every third of the
// lease, while the context given to Stage lives and until Commit or Abort
// returns; a loader that dies (its process killed, its request abandoned
// without Abort) stops renewing. Once its lease has expired, anyone may
// collect the version (Retention.CollectStages): it is marked aborted (its
// number is never reused) and its records are deleted.
//
// A loader whose lease lapsed must not commit: Put and Commit fail with
// ErrLeaseExpired once the loader cannot show a live lease, and the
// store's Commit itself refuses a version whose lease expired or that was
// collected. A loader considers its lease lost LeaseMargin before the store
// would (it measures from the time it sent its last successful renewal, on
// its own monotonic clock), so it stops writing before a collector may start
// deleting.

// DefaultStageLease is the lease of a stage when StageRequest.Lease is 0.
const DefaultStageLease = 30 * time.Second

// MinStageLease is the shortest lease a store grants.
const MinStageLease = 50 * time.Millisecond

// ErrLeaseExpired: the stage's lease lapsed (its loader stopped renewing
// in time, or the version was collected). It wraps ErrNotStaged: the
// version is not in a state that can be committed.
var ErrLeaseExpired = fmt.Errorf("stage lease expired: %w", ErrNotStaged)

// StageLease returns the lease a stage request asks for: d, or
// DefaultStageLease when d is 0, and at least MinStageLease.
func StageLease(d time.Duration) time.Duration {
	if d == 0 {
		d = DefaultStageLease
	}
	return max(d, MinStageLease)
}

// LeaseMargin is how long before the store's expiry a loader stops using
// its lease: a fifth of the lease.
func LeaseMargin(lease time.Duration) time.Duration { return lease / 5 }

// LeaseKeeper renews one stage's lease in the background. Engines use it
// in their Stager: Check before every write, Stop on Commit or Abort.
type LeaseKeeper struct {
	lease time.Duration
	renew func(ctx context.Context) (bool, error)

	mu       sync.Mutex
	deadline time.Time // monotonic: last renewal sent + lease - margin
	lost     bool      // the store refused a renewal

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// StartLease starts renewing a lease granted by a call sent at sent. renew
// asks the store to extend the lease by lease from now; it returns false if
// the store refused (lease expired, version no longer staging). Renewal
// stops when ctx ends or Stop is called. A failed renewal (store
// unreachable) is retried every tenth of the lease; the lease is lost once
// its deadline passes without a successful one.
func StartLease(ctx context.Context, lease time.Duration, sent time.Time, renew func(ctx context.Context) (bool, error)) *LeaseKeeper {
	k := &LeaseKeeper{
		lease:    lease,
		renew:    renew,
		deadline: sent.Add(lease - LeaseMargin(lease)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go k.run(ctx)
	return k
}

func (k *LeaseKeeper) run(ctx context.Context) {
	defer close(k.done)
	wait := k.lease / 3
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-k.stop:
			t.Stop()
			return
		case <-t.C:
		}
		k.mu.Lock()
		left := time.Until(k.deadline)
		k.mu.Unlock()
		// An attempt may take until the lease is lost anyway.
		rctx, cancel := context.WithTimeout(ctx, max(left, k.lease/10))
		sent := time.Now()
		ok, err := k.renew(rctx)
		cancel()
		k.mu.Lock()
		switch {
		case err == nil && ok:
			k.deadline = sent.Add(k.lease - LeaseMargin(k.lease))
			wait = k.lease / 3
		case err == nil && !ok:
			k.lost = true
		default:
			wait = k.lease / 10 // the store did not answer: retry soon
		}
		lost := k.lost
		k.mu.Unlock()
		if lost {
			return
		}
	}
}

// Check returns ErrLeaseExpired if the lease is lost or its deadline
// passed, nil otherwise.
func (k *LeaseKeeper) Check() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lost || !time.Now().Before(k.deadline) {
		return ErrLeaseExpired
	}
	return nil
}

// Stop stops the renewals and waits for the renewer to return.
func (k *LeaseKeeper) Stop() {
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.done
}
