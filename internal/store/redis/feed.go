package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// The change stream (store.Feed) lives outside a Cluster only: each write's
// script appends its change in the same script, and a script touches one
// slot, while pins, heads and versions are spread over many. On a Cluster
// HasFeed is false and replicas read from Redis.
//
//	p{c}:changes    stream: n (sequence), k (kind), i (incident), f (key), v (version or pin)
//	p{c}:seq        the last sequence number
//	p{c}:replicas   hash: <id> -> "<expiry ms> <serving 0|1> <renewal seq>", <id>:ack -> sequence

// DefaultChangeLog is how many changes the stream keeps (about, trimmed
// with MAXLEN ~): a replica that falls further behind loads again.
const DefaultChangeLog = 200_000

// WithChangeLog sets how many changes the stream keeps (default
// DefaultChangeLog).
func WithChangeLog(n int) Option {
	return func(s *Store) error {
		if n < 1000 {
			return errors.New("redisstore: change log must keep at least 1000 changes")
		}
		s.changeLog = n
		return nil
	}
}

// changeLua appends one change to the stream, numbered after the last.
const changeLua = `
local function change(cx, cs, maxlen, kind, inc, key, val)
  local n = redis.call('INCR', cs)
  redis.call('XADD', cx, 'MAXLEN', '~', maxlen, '*', 'n', n, 'k', kind, 'i', inc, 'f', key, 'v', val)
  return n
end
`

func (s *Store) changesKey() string  { return s.prefix + "{c}:changes" }
func (s *Store) seqKey() string      { return s.prefix + "{c}:seq" }
func (s *Store) replicasKey() string { return s.prefix + "{c}:replicas" }

// HasFeed reports whether writes are appended to a change stream (not on a
// Cluster).
func (s *Store) HasFeed() bool {
	_, cluster := s.c.(*redis.ClusterClient)
	return !cluster
}

// feedKeys and feedArgs extend a write script's keys and arguments with the
// change stream, or with nothing on a Cluster.
func (s *Store) feedKeys(keys ...string) []string {
	if !s.HasFeed() {
		return keys
	}
	return append(keys, s.changesKey(), s.seqKey())
}

func (s *Store) feedArgs(incident string, args ...any) []any {
	if !s.HasFeed() {
		return args
	}
	return append(args, incident, s.changeLog)
}

// renewReplicaScript: KEYS replicas, seq. ARGV id, serving, acked, lease
// ms, renewal seq (0: unnumbered). {-1} if a renewal with a seq at least
// ARGV[5] was applied already.
var renewReplicaScript = redis.NewScript(luaNow + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local cont = 0
if cur then
  local exp, srv, rs = string.match(cur, '^(%d+) (%d) ?(%d*)$')
  if tonumber(ARGV[5]) > 0 and rs and rs ~= '' and tonumber(rs) >= tonumber(ARGV[5]) then return {-1} end
  if exp and tonumber(exp) > now and srv == '1' then cont = 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + tonumber(ARGV[4])) .. ' ' .. ARGV[2] .. ' ' .. ARGV[5], ARGV[1] .. ':ack', ARGV[3])
local all, live = redis.call('HGETALL', KEYS[1]), 0
for i = 1, #all, 2 do
  local exp = string.match(all[i + 1], '^(%d+) %d')
  if exp and tonumber(exp) > now then live = live + 1 end
end
return {tonumber(redis.call('GET', KEYS[2]) or '0'), cont, live}
`)

// ackReplicaScript: KEYS replicas. ARGV id, seq. Raises a live entry's ack.
var ackReplicaScript = redis.NewScript(luaNow + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local exp = string.match(cur, '^(%d+) ')
if not exp or tonumber(exp) <= now then return 0 end
local a = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':ack') or '0')
if tonumber(ARGV[2]) > a then redis.call('HSET', KEYS[1], ARGV[1] .. ':ack', ARGV[2]) end
return 1
`)

// replicaAcksScript: KEYS replicas, seq. Returns {tail, serving, min ack}
// and removes expired entries.
var replicaAcksScript = redis.NewScript(luaNow + `
local tail = tonumber(redis.call('GET', KEYS[2]) or '0')
local all = redis.call('HGETALL', KEYS[1])
local vals = {}
for i = 1, #all, 2 do vals[all[i]] = all[i + 1] end
local n, low = 0, tail
for f, v in pairs(vals) do
  local exp, srv = string.match(v, '^(%d+) (%d)')
  if exp and not string.find(f, ':') then
    if tonumber(exp) <= now then
      redis.call('HDEL', KEYS[1], f, f .. ':ack')
    elseif srv == '1' then
      n = n + 1
      local a = tonumber(vals[f .. ':ack'] or '0')
      if a < low then low = a end
    end
  end
end
return {tail, n, low}
`)

// feedTailScript: KEYS changes, seq. Returns {seq, last stream id}.
var feedTailScript = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {tonumber(redis.call('GET', KEYS[2]) or '0'), id}
`)

// tombstoneScript writes a tombstone once and appends its change.
// KEYS: tomb hash (+ changes, seq). ARGV: field, time (+ unused, change log length).
var tombstoneScript = redis.NewScript(changeLua + `
local n = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if n == 1 and KEYS[3] then change(KEYS[2], KEYS[3], ARGV[4], '4', '', ARGV[1], '') end
return n
`)

var errNoFeed = fmt.Errorf("%w: no change stream on a Redis Cluster", store.ErrUnavailable)

func (s *Store) checkFeed() error {
	if !s.HasFeed() {
		return errNoFeed
	}
	if s.closed.Load() {
		return fmt.Errorf("%w: closed", store.ErrUnavailable)
	}
	return nil
}

// RenewReplica implements store.Feed.
func (s *Store) RenewReplica(ctx context.Context, r store.ReplicaLease) (store.Renewal, error) {
	if err := s.checkFeed(); err != nil {
		return store.Renewal{}, err
	}
	serving := "0"
	if r.Serving {
		serving = "1"
	}
	res, err := renewReplicaScript.Run(ctx, s.c, []string{s.replicasKey(), s.seqKey()}, r.ID, serving, r.Acked, r.Lease.Milliseconds(), r.Seq).Int64Slice()
	if err != nil {
		return store.Renewal{}, unavailable(err)
	}
	if len(res) == 1 && res[0] == -1 {
		return store.Renewal{}, fmt.Errorf("renewal %d of replica is older than one applied: %w", r.Seq, store.ErrConflict)
	}
	if len(res) != 3 {
		return store.Renewal{}, fmt.Errorf("%w: unexpected renewal reply", store.ErrUnavailable)
	}
	return store.Renewal{Tail: uint64(res[0]), Continuous: res[1] == 1, Live: int(res[2])}, nil
}

// AckReplica implements store.Feed.
func (s *Store) AckReplica(ctx context.Context, id string, seq uint64) error {
	if err := s.checkFeed(); err != nil {
		return err
	}
	return unavailable(ackReplicaScript.Run(ctx, s.c, []string{s.replicasKey()}, id, seq).Err())
}

// RemoveReplica implements store.Feed.
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	if err := s.checkFeed(); err != nil {
		return err
	}
	return unavailable(s.c.HDel(ctx, s.replicasKey(), id, id+":ack").Err())
}

// ReplicaAcks implements store.Feed.
func (s *Store) ReplicaAcks(ctx context.Context) (store.Acks, error) {
	if err := s.checkFeed(); err != nil {
		return store.Acks{}, err
	}
	res, err := replicaAcksScript.Run(ctx, s.c, []string{s.replicasKey(), s.seqKey()}).Int64Slice()
	if err != nil {
		return store.Acks{}, unavailable(err)
	}
	if len(res) != 3 {
		return store.Acks{}, fmt.Errorf("%w: unexpected acks reply", store.ErrUnavailable)
	}
	return store.Acks{Tail: uint64(res[0]), Serving: int(res[1]), MinAck: uint64(res[2])}, nil
}

// FeedTail implements store.Feed.
func (s *Store) FeedTail(ctx context.Context) (uint64, store.FeedCursor, error) {
	if err := s.checkFeed(); err != nil {
		return 0, "", err
	}
	res, err := feedTailScript.Run(ctx, s.c, []string{s.changesKey(), s.seqKey()}).Slice()
	if err != nil {
		return 0, "", unavailable(err)
	}
	if len(res) != 2 {
		return 0, "", fmt.Errorf("%w: unexpected tail reply", store.ErrUnavailable)
	}
	n, _ := res[0].(int64)
	id, _ := res[1].(string)
	return uint64(n), store.FeedCursor(id), nil
}

// Changes implements store.Feed with XREAD.
func (s *Store) Changes(ctx context.Context, after store.FeedCursor, block time.Duration, max int) ([]store.Change, store.FeedCursor, error) {
	if err := s.checkFeed(); err != nil {
		return nil, after, err
	}
	if after == "" {
		after = "0-0"
	}
	if block <= 0 {
		block = -1 // go-redis: no BLOCK argument
	}
	res, err := s.c.XRead(ctx, &redis.XReadArgs{Streams: []string{s.changesKey(), string(after)}, Count: int64(max), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, unavailable(err)
	}
	var out []store.Change
	cur := after
	for _, st := range res {
		for _, m := range st.Messages {
			c, err := decodeChange(m.Values)
			if err != nil {
				return nil, after, err
			}
			out = append(out, c)
			cur = store.FeedCursor(m.ID)
		}
	}
	return out, cur, nil
}

func decodeChange(v map[string]any) (store.Change, error) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	bad := func(what string) (store.Change, error) {
		return store.Change{}, fmt.Errorf("%w: corrupt change (%s)", store.ErrUnavailable, what)
	}
	seq, err := strconv.ParseUint(str("n"), 10, 64)
	if err != nil {
		return bad("sequence")
	}
	kind, err := strconv.ParseUint(str("k"), 10, 8)
	if err != nil {
		return bad("kind")
	}
	c := store.Change{Seq: seq, Kind: store.ChangeKind(kind), Incident: str("i")}
	if f := str("f"); f != "" {
		if len(f) != store.KeySize {
			return bad("key")
		}
		copy(c.Key[:], f)
	}
	switch c.Kind {
	case store.ChangePin:
		p, err := store.DecodePin([]byte(str("v")))
		if err != nil {
			return bad("pin")
		}
		c.Pin, c.Version = p, p.Version
	case store.ChangePublish, store.ChangeStaged, store.ChangeDeleted:
		if c.Version, err = strconv.ParseUint(str("v"), 10, 64); err != nil {
			return bad("version")
		}
	case store.ChangeTombstone:
	default:
		return bad("kind")
	}
	return c, nil
}

// Tombstones implements store.Feed.
func (s *Store) Tombstones(ctx context.Context, fn func(store.Key) error) error {
	return s.scanHashes(ctx, 1<<tombBits, func(b int) string { return s.prefix + "{t:" + strconv.FormatUint(uint64(b), 16) + "}" },
		func(f, _ string) error {
			if len(f) != store.KeySize {
				return fmt.Errorf("%w: malformed tombstone", store.ErrUnavailable)
			}
			var k store.Key
			copy(k[:], f)
			return fn(k)
		})
}

var _ store.Feed = (*Store)(nil)
