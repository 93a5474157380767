// Package redisstore implements store.Store on Redis (standalone, Sentinel or
// Cluster) through one go-redis UniversalClient, so that many impactd
// replicas can share one ledger.
//
// # Layout
//
// Keys never hold a subject identifier: subject keys (already HMACs) and
// idempotency keys only ever appear as hash fields. With prefix p (default
// "impact:") and incident id i:
//
//	p incidents                      set of incident ids
//	p{i:<i>}:head                    hash: visible, latest, pinbits
//	p{i:<i>}:versions                hash: <v> info, <v>:state, <v>:pub, <v>:bits, <v>:prev,
//	                                 <v>:lease, <v>:abortedat (stage leases, see lease.go)
//	p{i:<i>}:manifest:<v>            string: the version's manifest
//	p{r:<i>:<v>:<bucket>}            hash: 16-byte key -> store.AppendRecord bytes
//	p{p:<i>:<bucket>}                hash: 16-byte key -> store.AppendPin bytes
//	p{p:<i>:<bucket>}:idem           hash: idem key ++ subject key -> pin bytes
//	p visible                        pub/sub channel announcing publishes
//	p{audit}:log                     stream: the audit trail, id "<seq>-0" (never trimmed)
//	p{t:<b>}                         hash: 16-byte key -> erasure time (closed accounts)
//
// A version's records live in 2^bits bucket hashes; the bucket of a key is
// its top bits, so iterating the buckets in order and sorting each gives
// increasing key order (Scan). bits is chosen per version when its first
// records are written: from the entry count when the whole upload fits in
// the stage buffer, else from WithBucketFill's target assuming a roster of
// four buffers (2^21 entries, 65536 buckets, by default), or fixed by
// WithBuckets. Buckets of about 32 fields stay
// listpack-encoded (compact, and a lookup of an absent key scans few
// fields). Every bucket of a committed version holds a sentinel field "",
// so that a read of a bucket that does not exist (a version that was
// deleted or never loaded) fails closed instead of answering "absent".
//
// Pins use 2^pinbits buckets per incident (fixed when the incident is
// created, WithPinBuckets); the idempotency records of a subject live in a
// hash in the same slot as its pin bucket, so that a claim is one Lua script
// on one slot. Per-incident metadata shares the incident's hash tag. Hash
// tags are per bucket or per incident, never one for a whole snapshot.
//
// # Atomicity
//
// Staging writes only the new version's keys, invisible to readers. Publish
// is one Lua script on the incident's slot that checks the state, the
// expected visible version and forward movement, and flips the visible
// pointer last; a crash at any point leaves the old or the new version
// visible. ClaimPin is one Lua script on the pin bucket's slot.
//
// # Read path
//
// Read sends one pipeline: the visible pointer, the record at the cached
// visible version, the pin and the idempotency record. If the pointer
// differs from the cached version (a publish that the pub/sub notice has not
// reached yet), the record is read again at the true version: the cache
// saves a round trip, correctness never depends on it.
//
// # Durability
//
// See CheckDurability and WithWait.
//
// # Client
//
// Create the client with ContextTimeoutEnabled, so that request deadlines
// bound Redis calls (fail closed in time). A Cluster client must not route
// reads to replicas: New refuses ReadOnly, RouteByLatency and RouteRandomly,
// because the visible-version pointer must be read from the primary. With
// WithWait, keep its timeout below the client's ReadTimeout.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/redis/rueidis"

	"github.com/impact-health/impact/internal/store"
)

// Defaults.
const (
	// DefaultPrefix starts every key name.
	DefaultPrefix = "impact:"
	// DefaultBucketFill is the target number of records per bucket.
	DefaultBucketFill = 32
	// DefaultPinBuckets is the number of pin buckets of a new incident.
	DefaultPinBuckets = 4096
	// DefaultStageBuffer is how many entries a Stager buffers before it
	// writes them to Redis grouped by bucket (about 40 bytes each; two
	// buffers while one is being written).
	DefaultStageBuffer = 1 << 19
	maxBits            = 24
)

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the prefix of every key name (default "impact:"). Use a
// distinct prefix per deployment sharing one Redis.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		if strings.ContainsAny(p, "{}") {
			return errors.New("redisstore: prefix must not contain { or }")
		}
		s.prefix = p
		return nil
	}
}

// WithBuckets fixes the number of record buckets of every new version (a
// power of two up to 2^24). Without it the count adapts to the roster size
// (see WithBucketFill).
func WithBuckets(n int) Option {
	return func(s *Store) error {
		b, err := log2(n)
		if err != nil {
			return fmt.Errorf("redisstore: buckets: %w", err)
		}
		s.fixedBits = int(b)
		return nil
	}
}

// WithBucketFill sets the target number of records per bucket when the
// bucket count adapts to the roster (default 32; keep it well under the
// server's hash-max-listpack-entries, 128 by default).
func WithBucketFill(n int) Option {
	return func(s *Store) error {
		if n < 1 {
			return errors.New("redisstore: bucket fill must be positive")
		}
		s.fill = n
		return nil
	}
}

// WithPinBuckets sets the number of pin buckets for incidents created from
// now on (a power of two, default 4096). Existing incidents keep theirs.
func WithPinBuckets(n int) Option {
	return func(s *Store) error {
		b, err := log2(n)
		if err != nil {
			return fmt.Errorf("redisstore: pin buckets: %w", err)
		}
		s.pinBits = b
		return nil
	}
}

// WithWait makes every pin write and every publish wait until replicas
// replicas acknowledged it (Redis WAIT), failing with store.ErrUnavailable
// if fewer did within timeout. This narrows, but does not close, the window
// in which a failover loses an acknowledged pin: Redis replication stays
// asynchronous.
func WithWait(replicas int, timeout time.Duration) Option {
	return func(s *Store) error {
		if replicas < 0 || timeout < 0 {
			return errors.New("redisstore: wait replicas and timeout must not be negative")
		}
		s.waitReplicas, s.waitTimeout = replicas, timeout
		return nil
	}
}

// WithClock sets the clock used when a request carries no time.
func WithClock(now func() time.Time) Option {
	return func(s *Store) error {
		s.now = now
		return nil
	}
}

// WithStageBuffer sets how many entries a Stager buffers before writing
// (default 2^19, about 20 MB; a second buffer fills while a full one is
// written). Rosters that fit are bucketed by their exact size; larger ones
// are assumed to be at least four buffers long.
func WithStageBuffer(entries int) Option {
	return func(s *Store) error {
		if entries < 1 {
			return errors.New("redisstore: stage buffer must be positive")
		}
		s.stageBuffer = entries
		return nil
	}
}

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	c            redis.UniversalClient
	prefix       string
	fixedBits    int // -1: adaptive
	fill         int
	pinBits      uint8
	waitReplicas int
	waitTimeout  time.Duration
	now          func() time.Time
	stageBuffer  int
	changeLog    int

	// pinBitsCache: incident -> uint8 (immutable once the incident exists).
	pinBitsCache sync.Map
	// bitsCache: versionRef -> uint8 (immutable once set).
	bitsCache sync.Map
	// visible: incident -> *atomic.Uint64, a hint only.
	visible sync.Map

	// w runs the scripts (claims, publishes, commits, renewals...): the
	// client's options with no retries, so that a script whose reply was
	// lost is never run again blindly; its caller decides (a claim is
	// repeated with its idempotency key, which replays it).
	w redis.UniversalClient
	// rc, when set (WithReadClient), carries Read's pipeline, auto-pipelined
	// with the pipelines of concurrent reads (see readclient.go).
	rc rueidis.Client

	pubsub    *redis.PubSub
	closed    atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

type versionRef struct {
	incident string
	version  uint64
}

var _ store.Store = (*Store)(nil)

// New returns a Store on client. The Store owns the client: Close closes it.
// New does not contact Redis except to subscribe (in the background) to
// publish notices; use Ping and CheckDurability at start-up.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		if o := cc.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errors.New("redisstore: the cluster client must not route reads to replicas (ReadOnly, RouteByLatency, RouteRandomly): the visible-version pointer is read from the primary")
		}
	}
	s := &Store{
		c:           client,
		prefix:      DefaultPrefix,
		fixedBits:   -1,
		fill:        DefaultBucketFill,
		pinBits:     12,
		now:         time.Now,
		stageBuffer: DefaultStageBuffer,
		changeLog:   DefaultChangeLog,
		done:        make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.w = noRetries(client)
	s.pubsub = client.Subscribe(context.Background(), s.channel())
	go s.listen()
	return s, nil
}

// listen applies publish notices to the visible-version hints.
func (s *Store) listen() {
	ch := s.pubsub.Channel()
	for {
		select {
		case <-s.done:
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			i := strings.LastIndexByte(m.Payload, ' ')
			if i < 0 {
				continue
			}
			v, err := strconv.ParseUint(m.Payload[i+1:], 10, 64)
			if err != nil {
				continue
			}
			s.hint(m.Payload[:i]).Store(v)
		}
	}
}

func (s *Store) hint(incident string) *atomic.Uint64 {
	if h, ok := s.visible.Load(incident); ok {
		return h.(*atomic.Uint64)
	}
	h, _ := s.visible.LoadOrStore(incident, new(atomic.Uint64))
	return h.(*atomic.Uint64)
}

// noRetries returns a client like c that never retries a command: c itself
// if it already does not, or if its kind is not known, or if it is a
// Sentinel client (its failover handling belongs to it: there scripts keep
// the client's one retry).
func noRetries(c redis.UniversalClient) redis.UniversalClient {
	switch c := c.(type) {
	case *redis.Client:
		o := *c.Options()
		if o.MaxRetries < 0 || o.Addr == "FailoverClient" { // go-redis's name for a Sentinel client
			return c
		}
		o.MaxRetries, o.Dialer = -1, nil // the default dialer, built from the copied options
		// The copy must not share the original's maintenance-notification
		// handlers (go-redis refuses to register them twice).
		o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		return redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *c.Options()
		if o.MaxRetries < 0 {
			return c
		}
		o.MaxRetries = -1
		o.NewClient = nil // go-redis builds the nodes' clients from these options
		o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		return redis.NewClusterClient(&o)
	}
	return c
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return unavailable(s.c.Ping(ctx).Err())
}

// Close stops the publish subscription and closes the client.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		_ = s.pubsub.Close()
		if s.w != s.c {
			_ = s.w.Close()
		}
		if s.rc != nil {
			s.rc.Close()
		}
		err = s.c.Close()
	})
	return err
}

// Key names. Incident ids are validated (checkIncident) to hold no braces,
// so hash tags stay intact.

func (s *Store) channel() string               { return s.prefix + "visible" }
func (s *Store) incidentsKey() string          { return s.prefix + "incidents" }
func (s *Store) headKey(inc string) string     { return s.prefix + "{i:" + inc + "}:head" }
func (s *Store) versionsKey(inc string) string { return s.prefix + "{i:" + inc + "}:versions" }
func (s *Store) manifestKey(inc string, v uint64) string {
	return s.prefix + "{i:" + inc + "}:manifest:" + strconv.FormatUint(v, 10)
}
func (s *Store) recordsKey(inc string, v uint64, b uint32) string {
	return s.prefix + "{r:" + inc + ":" + strconv.FormatUint(v, 10) + ":" + strconv.FormatUint(uint64(b), 16) + "}"
}
func (s *Store) pinsKey(inc string, b uint32) string {
	return s.prefix + "{p:" + inc + ":" + strconv.FormatUint(uint64(b), 16) + "}"
}
func (s *Store) idemKey(inc string, b uint32) string { return s.pinsKey(inc, b) + ":idem" }

// bucket is the top bits of key.
func bucket(key store.Key, bits uint8) uint32 {
	if bits == 0 {
		return 0
	}
	top := uint32(key[0])<<24 | uint32(key[1])<<16 | uint32(key[2])<<8 | uint32(key[3])
	return top >> (32 - bits)
}

func vfield(v uint64, suffix string) string { return strconv.FormatUint(v, 10) + suffix }

// errBadIncident: an incident id this store cannot hold (braces would break
// the Cluster hash tags).
var errBadIncident = errors.New("incident id must be 1 to 128 printable characters without braces or spaces")

func checkIncident(inc string) error {
	if inc == "" || len(inc) > 128 {
		return errBadIncident
	}
	for i := 0; i < len(inc); i++ {
		if c := inc[i]; c <= ' ' || c == '{' || c == '}' || c >= 0x7f {
			return errBadIncident
		}
	}
	return nil
}

// unavailable wraps a Redis error as store.ErrUnavailable (connection
// refused, timeouts, context deadlines, server errors alike: the store could
// not establish the answer).
func unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: redis: %w", store.ErrUnavailable, err)
}

func log2(n int) (uint8, error) {
	if n < 1 || n > 1<<maxBits || n&(n-1) != 0 {
		return 0, fmt.Errorf("%d is not a power of two between 1 and 2^%d", n, maxBits)
	}
	var b uint8
	for 1<<b < n {
		b++
	}
	return b, nil
}

// pinBitsOf returns the incident's pin bucket bits (ErrNotFound if the
// incident does not exist).
func (s *Store) pinBitsOf(ctx context.Context, inc string) (uint8, error) {
	if v, ok := s.pinBitsCache.Load(inc); ok {
		return v.(uint8), nil
	}
	if checkIncident(inc) != nil {
		return 0, store.ErrNotFound
	}
	v, err := s.c.HGet(ctx, s.headKey(inc), "pinbits").Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("incident: %w", store.ErrNotFound)
	}
	if err != nil {
		return 0, unavailable(err)
	}
	b, err := strconv.ParseUint(v, 10, 8)
	if err != nil || b > maxBits {
		return 0, fmt.Errorf("%w: corrupt pin bucket count", store.ErrUnavailable)
	}
	s.pinBitsCache.Store(inc, uint8(b))
	return uint8(b), nil
}

// bitsOf returns a version's record bucket bits; ok is false if they were
// never set (nothing written yet, or no such version).
func (s *Store) bitsOf(ctx context.Context, inc string, v uint64) (uint8, bool, error) {
	ref := versionRef{inc, v}
	if b, ok := s.bitsCache.Load(ref); ok {
		return b.(uint8), true, nil
	}
	str, err := s.c.HGet(ctx, s.versionsKey(inc), vfield(v, ":bits")).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, unavailable(err)
	}
	b, err := parseBits(str)
	if err != nil {
		return 0, false, err
	}
	s.bitsCache.Store(ref, b)
	return b, true, nil
}

func parseBits(str string) (uint8, error) {
	b, err := strconv.ParseUint(str, 10, 8)
	if err != nil || b > maxBits {
		return 0, fmt.Errorf("%w: corrupt bucket count", store.ErrUnavailable)
	}
	return uint8(b), nil
}

// withWait runs fn's commands in one pipeline on one connection, followed by
// WAIT when WithWait is set, so that WAIT covers exactly these writes.
// routeKey picks the Cluster node.
func (s *Store) withWait(ctx context.Context, routeKey string, fn func(p redis.Pipeliner)) ([]redis.Cmder, error) {
	var c redis.Cmdable = s.w
	if s.waitReplicas > 0 {
		if cc, ok := s.w.(*redis.ClusterClient); ok {
			node, err := cc.MasterForKey(ctx, routeKey)
			if err != nil {
				return nil, unavailable(err)
			}
			c = node
		}
	}
	type waiter interface {
		Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
	}
	var wait *redis.IntCmd
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		fn(p)
		if s.waitReplicas > 0 {
			w, ok := p.(waiter)
			if !ok {
				return errors.New("redisstore: pipeline cannot WAIT")
			}
			wait = w.Wait(ctx, s.waitReplicas, s.waitTimeout)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return cmds, err
	}
	if wait != nil {
		if n := wait.Val(); n < int64(s.waitReplicas) {
			return cmds, fmt.Errorf("%w: write confirmed by %d of %d replicas", store.ErrUnavailable, n, s.waitReplicas)
		}
	}
	return cmds, nil
}

// runScript runs a script, in a pipeline with WAIT when WithWait is set.
func (s *Store) runScript(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	if s.waitReplicas == 0 {
		v, err := sc.Run(ctx, s.w, keys, args...).Result()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return v, unavailable(err)
	}
	var res *redis.Cmd
	_, err := s.withWait(ctx, keys[0], func(p redis.Pipeliner) { res = sc.EvalSha(ctx, p, keys, args...) })
	if res != nil && redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		_, err = s.withWait(ctx, keys[0], func(p redis.Pipeliner) { res = sc.Eval(ctx, p, keys, args...) })
	}
	if res != nil && res.Err() != nil && !errors.Is(res.Err(), redis.Nil) {
		return nil, unavailable(res.Err())
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return res.Val(), nil
}

// cmdErr returns the first real error of a pipeline: its own error, or that
// of one of cmds; redis.Nil ("no such key or
// field") is an answer, not an error.
func cmdErr(cmds []redis.Cmder, pipeErr error) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(err)
		}
	}
	if pipeErr != nil && !errors.Is(pipeErr, redis.Nil) {
		return unavailable(pipeErr)
	}
	return nil
}
