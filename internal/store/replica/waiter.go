package replica

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// waiter makes writes wait for the replicas' acknowledgements. Writers that
// finished their engine write register; one goroutine asks the registry for
// the stream's tail and the serving replicas' lowest acknowledgement, gives
// every write registered before that poll the tail as its target (its
// change is at or before it), and releases the writes whose target every
// serving replica acknowledged. Concurrent writes share polls.
type waiter struct {
	feed    store.Feed
	max     time.Duration
	done    <-chan struct{}
	mu      sync.Mutex
	fresh   []*pendingWrite // registered, no target yet
	waiting []*pendingWrite // with a target
	kick    chan struct{}
	once    sync.Once
	n       atomic.Uint64
	total   atomic.Int64 // ns
}

func (w *waiter) stats() (uint64, time.Duration) {
	return w.n.Load(), time.Duration(w.total.Load())
}

type pendingWrite struct {
	target uint64
	since  time.Time
	done   chan error
}

func newWaiter(feed store.Feed, max time.Duration, done <-chan struct{}) *waiter {
	return &waiter{feed: feed, max: max, done: done, kick: make(chan struct{}, 1)}
}

// wait returns once every replica serving from memory applied the changes
// written before the call, or a replica's entry expired; it fails with
// store.ErrUnavailable after max or when ctx ends (the write stands: its
// repeat waits again).
func (w *waiter) wait(ctx context.Context) error {
	w.once.Do(func() { go w.loop() })
	p := &pendingWrite{since: time.Now(), done: make(chan error, 1)}
	w.mu.Lock()
	w.fresh = append(w.fresh, p)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	defer func() { w.n.Add(1); w.total.Add(int64(time.Since(p.since))) }()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: written, not yet applied by every replica: %w", store.ErrUnavailable, ctx.Err())
	case <-w.done:
		return fmt.Errorf("%w: closed while waiting for replicas", store.ErrUnavailable)
	}
}

func (w *waiter) loop() {
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		}
		for w.round() {
			select {
			case <-w.done:
				return
			case <-time.After(pollInterval):
			}
		}
	}
}

// round polls once; it reports whether writes are still waiting.
func (w *waiter) round() bool {
	w.mu.Lock()
	fresh := w.fresh
	w.fresh = nil
	if len(fresh) == 0 && len(w.waiting) == 0 {
		w.mu.Unlock()
		return false
	}
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	acks, err := w.feed.ReplicaAcks(ctx)
	cancel()

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// Unknown targets stay unknown: those writes poll again.
		w.fresh = append(fresh, w.fresh...)
	} else {
		for _, p := range fresh {
			p.target = acks.Tail
		}
		w.waiting = append(w.waiting, fresh...)
	}
	now := time.Now()
	keep := w.waiting[:0]
	for _, p := range w.waiting {
		switch {
		case err == nil && (acks.Serving == 0 || acks.MinAck >= p.target):
			p.done <- nil
		case now.Sub(p.since) > w.max:
			p.done <- fmt.Errorf("%w: written, not applied by every replica within %s", store.ErrUnavailable, w.max)
		default:
			keep = append(keep, p)
		}
	}
	w.waiting = keep
	for i := 0; i < len(w.fresh); {
		if p := w.fresh[i]; now.Sub(p.since) > w.max {
			p.done <- fmt.Errorf("%w: written, replicas not reachable within %s", store.ErrUnavailable, w.max)
			w.fresh = append(w.fresh[:i], w.fresh[i+1:]...)
			continue
		}
		i++
	}
	return len(w.waiting)+len(w.fresh) > 0
}
