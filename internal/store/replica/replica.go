// Package replica answers reads from memory on every impactd replica while
// keeping "the app never contradicts the email" (a claim acknowledged on one
// replica is seen by every read that starts afterwards, on any replica) and
// monotonic reads. It is a store.Store decorator over an engine that is also
// a store.Feed (the Redis store outside a Cluster, and the embedded store).
//
// # Protocol
//
//   - Leases. Each replica registers in the engine's registry with a lease
//     (Config.Lease, on the engine's clock) and renews it every Lease/3. It
//     answers from memory only while its own lease, counted on its monotonic
//     clock from before the renewal was sent, minus Config.Margin, runs;
//     otherwise it reads from the engine, which fails closed when it is
//     unreachable.
//   - Changes. Every write (claim, restore, publish, rollback, erase, commit,
//     deletion) appends its change to the engine's change stream in the
//     same script that performs it, numbered 1, 2, 3... Each replica tails
//     the stream, applies the changes in order and acknowledges the last
//     one it applied.
//   - Writes wait. After the engine's write, the writer waits until every
//     live, serving replica acknowledged the stream's tail as read after the
//     write, or that replica's entry expired on the engine's clock. A replica
//     cut off from the engine stops answering from memory (its lease, less
//     the margin) before its entry expires (its lease, counted from when the
//     engine received the renewal): before the writer stops waiting for it.
//   - Serving again. A replica whose entry was not live and serving just
//     before a renewal (a first join, a lapse, a degraded spell) may have
//     been skipped by writers: it answers from memory only once it applied
//     every change up to the tail that renewal returned.
//   - Joining. A replica notes the stream's tail, loads every incident's
//     visible version, pins and the tombstones, applies the stream from the
//     noted tail, and only then asks to serve (above). A gap in the
//     sequence (the stream was trimmed past it, or the engine lost it)
//     makes it load again.
//   - Loading. A committed version is loaded ahead of its publish (the
//     ChangeStaged change), so a publish's wait covers a flip. If a publish
//     finds its version not loaded, the replica stops serving first (so
//     writers stop waiting for it), loads, and serves again.
//
// Reads with an idempotency key (the claim decision) and reads marked
// store.WithFresh (an at_least_version ahead of this replica) go to the
// engine.
package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// Defaults, and why.
const (
	// DefaultLease: a replica cut off from Redis stops answering from memory
	// within 2 s, and a write waits at most about that long for a replica
	// that vanished without leaving. Renewals go every Lease/3, so two
	// renewals may fail before the lease lapses.
	DefaultLease = 2 * time.Second
	// DefaultMargin covers the difference between the replica's and
	// Redis's clock rates over one lease, and the time between a renewal's
	// send and its execution not being negative: 10% of the lease is
	// orders of magnitude more than quartz drift (~1e-5).
	DefaultMargin = 200 * time.Millisecond
	// pollInterval is how often a waiting writer asks for the replicas'
	// acknowledgements (only while writes wait).
	pollInterval = 500 * time.Microsecond
	// tailBatch is how many changes one stream read takes.
	tailBatch = 4096
)

// Config configures a Replica.
type Config struct {
	// ID names the replica in the registry (default: random).
	ID     string
	Lease  time.Duration // default DefaultLease
	Margin time.Duration // default DefaultMargin
	// Yield, when set, is called between batches of a version's load, so
	// that loading backs off while reads wait (see package pace).
	Yield func(ctx context.Context) error
	Log   *slog.Logger
	// OnServing, when set, is called (from the protocol's goroutines) each
	// time the replica starts or stops answering from memory.
	OnServing func(serving bool)
}

// Engine is what a Replica decorates.
type Engine interface {
	store.Store
	store.Feed
}

// Replica is a store.Store that answers reads from memory (see the package
// doc). Run must be running for it to do so; until then, and whenever its
// lease is not valid, it reads from the engine.
type Replica struct {
	store.Store // the engine: every method not overridden here
	feed        store.Feed
	cfg         Config
	log         *slog.Logger
	epoch       time.Time

	mem *memory

	// Serving state. mu orders the transitions; reads only load atomics.
	mu          sync.Mutex
	serving     atomic.Bool  // answers from memory (with a valid lease)
	leaseUntil  atomic.Int64 // since epoch, ns
	applied     atomic.Uint64
	servingFrom uint64 // may serve once applied >= servingFrom
	pending     bool   // waiting to reach servingFrom
	gen         uint64 // counts stops (see renew)
	renewMu     sync.Mutex
	renewSeq    uint64       // the last renewal's number (under renewMu)
	healthyAt   atomic.Int64 // since epoch, ns: last successful stream read
	joined      atomic.Bool
	degraded    atomic.Bool // loading a version a publish needs
	rejoin      atomic.Bool // the engine lost the stream: load again

	loads  sync.Map      // ref -> *load
	floors sync.Map      // incident -> *atomic.Uint64 (see floor)
	tail   atomic.Uint64 // the stream's tail at the last renewal
	live   atomic.Int64  // live replicas in the registry at the last renewal

	w        *waiter
	renewNow chan struct{} // asks the renewal loop for a renewal now
	done     chan struct{}
	closed   sync.Once
}

type load struct {
	done chan struct{}
	t    *table
	err  error
}

var _ store.Store = (*Replica)(nil)

// New decorates engine. Call Run to join and serve from memory.
func New(engine Engine, cfg Config) (*Replica, error) {
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Margin == 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Lease < 100*time.Millisecond || cfg.Margin <= 0 || cfg.Margin >= cfg.Lease/2 {
		return nil, fmt.Errorf("replica: lease %s with margin %s: the lease must be at least 100ms and the margin positive and under half the lease", cfg.Lease, cfg.Margin)
	}
	if cfg.ID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		cfg.ID = hex.EncodeToString(b[:])
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Replica{Store: engine, feed: engine, cfg: cfg, log: log, epoch: time.Now(), mem: newMemory(), done: make(chan struct{}),
		renewNow: make(chan struct{}, 1)}
	r.w = newWaiter(engine, 3*cfg.Lease, r.done)
	return r, nil
}

// ID is the replica's name in the registry.
func (r *Replica) ID() string { return r.cfg.ID }

func (r *Replica) now() int64 { return int64(time.Since(r.epoch)) }

// Serving reports whether the replica answers from memory now.
func (r *Replica) Serving() bool {
	return r.serving.Load() && r.now() < r.leaseUntil.Load()
}

// MemoryStats reports what the replica holds in memory.
func (r *Replica) MemoryStats() Stats {
	s := r.mem.stats()
	r.loads.Range(func(_, v any) bool {
		l := v.(*load)
		select {
		case <-l.done:
			if l.t != nil {
				s.Staged++
				s.TableBytes += l.t.bytes()
			}
		default:
		}
		return true
	})
	return s
}

// Applied is the sequence number of the last change applied.
func (r *Replica) Applied() uint64 { return r.applied.Load() }

// LiveReplicas is the number of live replicas in the registry (this one
// included) at the last renewal, or 0 before the first: what a global
// rate limit is divided by. An atomic load.
func (r *Replica) LiveReplicas() int { return int(r.live.Load()) }

// Status is what a replica reports to its metrics.
type Status struct {
	Serving bool
	// Lag is how many changes the stream held, at the last renewal, that
	// the replica had not applied yet then or since.
	Lag         uint64
	MemoryBytes int // tables of records, visible and loaded ahead
	Pins        int
	// Waits and WaitTime: writes that waited for the replicas, and how long
	// they waited in all.
	Waits    uint64
	WaitTime time.Duration
}

// Status reports the replica's state (no I/O).
func (r *Replica) Status() Status {
	st := r.MemoryStats()
	s := Status{Serving: r.Serving(), MemoryBytes: st.TableBytes, Pins: st.Pins}
	if t, a := r.tail.Load(), r.applied.Load(); t > a {
		s.Lag = t - a
	}
	s.Waits, s.WaitTime = r.w.stats()
	return s
}

// Close stops the protocol and closes the engine.
func (r *Replica) Close() error {
	r.stop()
	r.leaseUntil.Store(0)
	r.closed.Do(func() { close(r.done) })
	return r.Store.Close()
}

// ---- reads

// Read answers from memory while the replica serves, except reads with an
// idempotency key and fresh reads, which go to the engine (and, when they
// find a pin or a replay, wait until every replica applied it: a claim
// whose wait failed is confirmed by its repeat).
func (r *Replica) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	if idem == nil && !store.IsFresh(ctx) && r.Serving() {
		if err := ctx.Err(); err != nil {
			return store.View{}, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		if v, ok := r.mem.view(incident, key); ok && v.Visible >= r.floor(incident).Load() {
			return v, nil
		}
		// Memory is behind a visible version this replica already answered
		// from the engine (while it did not serve, or for a fresh read): the
		// engine answers until memory catches up, so that one replica's
		// answers never go back to an older version.
	}
	v, err := r.Store.Read(ctx, incident, key, idem)
	if err == nil {
		raise(r.floor(incident), v.Visible)
	}
	if err == nil && idem != nil && (v.Pin != nil || v.Replay != nil) {
		if err := r.w.wait(ctx); err != nil {
			return store.View{}, err
		}
	}
	return v, err
}

// floor is the highest visible version of incident this replica answered
// from the engine.
func (r *Replica) floor(incident string) *atomic.Uint64 {
	if f, ok := r.floors.Load(incident); ok {
		return f.(*atomic.Uint64)
	}
	f, _ := r.floors.LoadOrStore(incident, new(atomic.Uint64))
	return f.(*atomic.Uint64)
}

func raise(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Records answers from memory for the visible version while serving.
func (r *Replica) Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error) {
	if r.Serving() && ctx.Err() == nil {
		if recs, ok := r.mem.records(incident, version, keys); ok {
			return recs, nil
		}
	}
	return r.Store.Records(ctx, incident, version, keys)
}

// ---- writes: the engine's, then the wait

// ClaimPin writes the pin, then waits until every serving replica applied it.
func (r *Replica) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	if err := r.Store.ClaimPin(ctx, incident, key, old, next, idem); err != nil {
		return err
	}
	return r.w.wait(ctx)
}

// Publish flips the visible version, then waits until every serving
// replica applied the flip.
func (r *Replica) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	vi, err := r.Store.Publish(ctx, req)
	if err != nil {
		return vi, err
	}
	return vi, r.w.wait(ctx)
}

// Tombstone closes the account, then waits until every serving replica
// forgot the subject.
func (r *Replica) Tombstone(ctx context.Context, key store.Key) (int, error) {
	n, err := r.Store.Tombstone(ctx, key)
	if err != nil {
		return n, err
	}
	return n, r.w.wait(ctx)
}

// Unwrap returns the engine.
func (r *Replica) Unwrap() store.Store { return r.Store }

// ---- serving state

func (r *Replica) setServing(on bool) {
	if r.serving.Swap(on) != on && r.cfg.OnServing != nil {
		r.cfg.OnServing(on)
	}
}

// stop makes the replica stop answering from memory now.
func (r *Replica) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setServing(false)
	r.pending = false
	r.gen++
}

// maybeServe starts answering from memory once the tail asked for is
// applied.
func (r *Replica) maybeServe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending && r.healthy() && r.applied.Load() >= r.servingFrom {
		r.pending = false
		r.setServing(true)
	}
}

// healthy: joined, not loading for a publish, and the stream read
// recently (so that acknowledgements flow).
func (r *Replica) healthy() bool {
	select {
	case <-r.done:
		return false
	default:
	}
	return r.joined.Load() && !r.degraded.Load() && !r.rejoin.Load() &&
		r.now()-r.healthyAt.Load() < int64(r.cfg.Lease/2)
}

// renew sends one renewal and updates the serving state from its answer.
//
// Renewals are serialized (renewMu), so the registry hears them in the
// order they were decided; and a renewal that said "serving" counts only if
// the replica did not stop while it was in flight (gen): otherwise a
// "serving" answered after a stop would let the replica serve again
// although the registry's last word was a later "not serving" (writers
// would not wait for it).
func (r *Replica) renew(ctx context.Context) {
	r.renewMu.Lock()
	defer r.renewMu.Unlock()
	want := r.healthy()
	if !want {
		r.stop() // before the engine hears it: writers may stop waiting at once
	}
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	t0 := r.now()
	lapsed := t0 >= r.leaseUntil.Load()
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Lease/3)
	r.renewSeq++
	ren, err := r.feed.RenewReplica(rctx, store.ReplicaLease{ID: r.cfg.ID, Serving: want, Acked: r.applied.Load(), Lease: r.cfg.Lease, Seq: r.renewSeq})
	cancel()
	if err != nil {
		// A failed renewal may still reach the engine later; its number
		// makes the engine refuse it once a newer one arrived.
		r.log.Warn("replica lease renewal failed", "err", err)
		return // the lease runs out on its own
	}
	if ren.Tail < r.applied.Load() {
		// The engine's stream is behind what was applied: it lost changes
		// (a Redis restart without persistence). Load everything again.
		r.log.Error("change stream is behind this replica: loading again", "tail", ren.Tail, "applied", r.applied.Load())
		r.rejoin.Store(true)
		r.stop()
		return
	}
	r.tail.Store(ren.Tail)
	r.live.Store(int64(ren.Live))
	r.mu.Lock()
	r.leaseUntil.Store(t0 + int64(r.cfg.Lease-r.cfg.Margin))
	if want && r.gen == gen && (!ren.Continuous || lapsed || !r.serving.Load()) {
		r.setServing(false)
		r.servingFrom, r.pending = ren.Tail, true
	}
	r.mu.Unlock()
	r.maybeServe()
}

func (r *Replica) askRenewal() {
	select {
	case r.renewNow <- struct{}{}:
	default:
	}
}

// ---- running

// Run joins and serves until ctx ends, loading again after a gap or an
// engine that lost its stream. It removes the replica's entry on return.
func (r *Replica) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		r.stop()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer rcancel()
		if err := r.feed.RemoveReplica(rctx, r.cfg.ID); err != nil {
			r.log.Warn("replica could not leave the registry: writers wait for its lease", "err", err)
		}
	}()

	renewCtx, stopRenew := context.WithCancel(ctx)
	defer stopRenew()
	go func() {
		t := time.NewTicker(r.cfg.Lease / 3)
		defer t.Stop()
		for {
			r.renew(renewCtx)
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
			case <-r.renewNow:
			}
		}
	}()

	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("replica loading again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.Lease)
	}
	return nil
}

var errGap = errors.New("change stream does not continue what this replica applied (trimmed past it, or renumbered after a loss)")

// session loads everything and then applies the stream until an error.
func (r *Replica) session(ctx context.Context) error {
	r.stop()
	r.joined.Store(false)
	r.rejoin.Store(false)
	tail, cursor, err := r.feed.FeedTail(ctx)
	if err != nil {
		return err
	}
	mem, err := r.loadAll(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.mem.mu.Lock()
	r.mem.incidents, r.mem.tombs = mem.incidents, mem.tombs
	r.mem.mu.Unlock()
	r.applied.Store(tail)
	r.mu.Unlock()
	r.healthyAt.Store(r.now())
	r.joined.Store(true)
	r.askRenewal() // to serve without waiting for the next tick
	r.log.Info("replica loaded", "applied", tail)

	// Acknowledgements go from their own goroutine, coalesced (the engine
	// keeps the highest), so that the next stream read does not wait for
	// the previous acknowledgement's round trip.
	ack := make(chan struct{}, 1)
	ackDone := make(chan struct{})
	ackCtx, stopAcks := context.WithCancel(ctx)
	defer func() { stopAcks(); <-ackDone }()
	go func() {
		defer close(ackDone)
		for {
			select {
			case <-ackCtx.Done():
				return
			case <-ack:
			}
			actx, cancel := context.WithTimeout(ackCtx, r.cfg.Lease/3)
			err := r.feed.AckReplica(actx, r.cfg.ID, r.applied.Load())
			cancel()
			if err != nil && ackCtx.Err() == nil {
				r.log.Warn("replica acknowledgement failed", "err", err)
			}
		}
	}()
	retry := func(what string, err error) {
		r.log.Warn("replica "+what+" failed: retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		if r.rejoin.Load() {
			return errors.New("engine lost its change stream")
		}
		// A failed read is retried from the same cursor (no reload); while
		// it fails, healthy() turns false and the lease lapses.
		changes, next, err := r.feed.Changes(ctx, cursor, r.cfg.Lease/4, tailBatch)
		if err != nil {
			retry("stream read", err)
			continue
		}
		r.healthyAt.Store(r.now())
		for _, c := range changes {
			applied := r.applied.Load()
			if c.Seq != applied+1 {
				// A gap (trimmed past this replica), or a number it already
				// applied: the engine lost changes (a failover) and numbers
				// new ones again. Either way, load everything again.
				return errGap
			}
			for {
				if err = r.apply(ctx, c); err == nil || ctx.Err() != nil {
					break
				}
				retry("apply", err) // a version that would not load: degraded until it does
			}
			if err != nil {
				return err
			}
			r.applied.Store(c.Seq)
		}
		cursor = next
		r.maybeServe()
		if len(changes) > 0 {
			select { // the acker sends the latest applied; the next read does not wait for it
			case ack <- struct{}{}:
			default:
			}
		}
	}
	return ctx.Err()
}

// loadAll reads every incident's visible version, pins, and the tombstones.
func (r *Replica) loadAll(ctx context.Context) (*memory, error) {
	m := newMemory()
	heads, err := r.Store.Incidents(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range heads {
		st := m.incident(h.Incident)
		if h.Visible > 0 {
			t, err := r.loadTable(ctx, h.Incident, h.Visible)
			if err != nil {
				return nil, err
			}
			st.visible, st.table = h.Visible, t
		}
		err := r.Store.Pins(ctx, h.Incident, func(k store.Key, p store.Pin) error {
			st.pins[k] = p
			return nil
		})
		if err != nil {
			return nil, err
		}
		// A version committed after the visible one is loaded ahead.
		vs, err := r.Store.Versions(ctx, h.Incident)
		if err != nil {
			return nil, err
		}
		for i := len(vs) - 1; i >= 0; i-- {
			if vs[i].Version > h.Visible && vs[i].State == store.StateStaged {
				r.preload(ctx, h.Incident, vs[i].Version)
				break
			}
		}
	}
	err = r.feed.Tombstones(ctx, func(k store.Key) error {
		m.tombs[k] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k := range m.tombs {
		for _, st := range m.incidents {
			delete(st.pins, k)
		}
	}
	return m, nil
}

// loadTable reads a version's records into a table, yielding between
// batches when Config.Yield says reads are waiting.
func (r *Replica) loadTable(ctx context.Context, incident string, version uint64) (*table, error) {
	vi, _, err := r.Store.Version(ctx, incident, version)
	if err != nil {
		return nil, err
	}
	b := newBuilder(vi.Counts.Affected + vi.Counts.UnderReview)
	n := 0
	err = r.Store.Scan(ctx, incident, version, func(e store.Entry) error {
		b.add(e)
		if n++; n%8192 == 0 && r.cfg.Yield != nil {
			return r.cfg.Yield(ctx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load version %d: %w", version, err)
	}
	return b.finish(), nil
}

// preload loads a committed version in the background, once.
func (r *Replica) preload(ctx context.Context, incident string, version uint64) *load {
	l := &load{done: make(chan struct{})}
	got, loaded := r.loads.LoadOrStore(ref{incident, version}, l)
	if loaded {
		return got.(*load)
	}
	go func() {
		defer close(l.done)
		l.t, l.err = r.loadTable(ctx, incident, version)
		if l.err != nil {
			r.loads.Delete(ref{incident, version}) // a later need tries again
		}
	}()
	return l
}

// apply applies one change to memory.
func (r *Replica) apply(ctx context.Context, c store.Change) error {
	switch c.Kind {
	case store.ChangePin:
		r.mem.applyPin(c)
	case store.ChangeTombstone:
		r.mem.applyTombstone(c.Key)
	case store.ChangeDeleted:
		r.loads.Delete(ref{c.Incident, c.Version})
	case store.ChangeStaged:
		r.mem.known(c.Incident)
		r.preload(ctx, c.Incident, c.Version)
	case store.ChangePublish:
		return r.applyPublish(ctx, c.Incident, c.Version)
	}
	return nil
}

// applyPublish flips to a version, loading it first if it is not loaded
// yet; while it loads the replica does not serve, so that writers do not
// wait for it.
func (r *Replica) applyPublish(ctx context.Context, incident string, version uint64) error {
	var t *table
	if got, ok := r.loads.Load(ref{incident, version}); ok {
		select {
		case <-got.(*load).done:
			t = got.(*load).t
		default:
		}
	}
	if t == nil {
		r.degraded.Store(true)
		defer func() { r.degraded.Store(false); r.askRenewal() }()
		r.renew(ctx) // not serving, before the load
		for t == nil {
			l := r.preload(ctx, incident, version)
			select {
			case <-l.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if l.err != nil {
				return l.err
			}
			t = l.t
		}
	}
	r.mem.flip(incident, version, t)
	r.loads.Range(func(k, _ any) bool {
		if k.(ref).incident == incident && k.(ref).version <= version {
			r.loads.Delete(k)
		}
		return true
	})
	return nil
}
