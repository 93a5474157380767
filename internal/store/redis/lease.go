package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// Stage leases on Redis.
//
// A staging version's lease expiry is stored beside its state, in the
// versions hash: "<v>:lease", in milliseconds of the Redis server's clock.
// Every script that grants, renews, checks or collects a lease reads the
// time with TIME inside the script, so that expiry is decided on one clock
// (the Redis primary's) whatever the replicas' clocks say; the loader never
// compares its own wall clock with the stored expiry. It keeps a deadline
// of its own instead, on its monotonic clock, from the moment it sent its
// last successful renewal minus store.LeaseMargin: that moment precedes the
// server's TIME in the script, so the loader stops writing before the
// server lets a collector in. After a failover, the new primary's clock
// may differ from the old one's: leases are lengthened or shortened by that
// skew (NTP keeps it to milliseconds, well inside the margin).
//
// Collection marks the version aborted ("<v>:state" 4, "<v>:abortedat"),
// then unlinks its record buckets in pipelines of writeChunk keys, then
// removes "<v>:bits". An aborted version that still has "<v>:bits" may
// still have records: a later CollectStages unlinks them again, so an
// interrupted collection (or an Abort that Redis cut short) is finished by
// the next one. "<v>:bits" of a version aborted by a collector is kept for
// one collectGrace after the abort, and its buckets unlinked again on every
// pass until then, so that a write a dead loader had in flight when its
// lease expired cannot leave keys behind.

// luaNow sets now to the server's time in milliseconds.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// renewScript extends a live lease. KEYS: versions. ARGV: version, lease ms.
// 1 if renewed, 0 if the version is not staging or its lease expired.
var renewScript = redis.NewScript(luaNow + `
if redis.call('HGET', KEYS[1], ARGV[1] .. ':state') ~= '1' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':lease') or '0') < now then return 0 end
redis.call('HSET', KEYS[1], ARGV[1] .. ':lease', string.format('%.0f', now + tonumber(ARGV[2])))
return 1
`)

// collectScript aborts a staging version whose lease expired and returns
// what is left to delete. KEYS: versions. ARGV: version. Returns {'live'}
// for a staging version with a live lease, {'kept'} for a version that is
// not staging nor aborted, or {'collect', bits or ”, aborted now (1/0),
// aborted by a collector (1/0)}.
var collectScript = redis.NewScript(luaNow + `
local v = ARGV[1]
local st = redis.call('HGET', KEYS[1], v .. ':state')
local new = 0
if st == '1' then
  if tonumber(redis.call('HGET', KEYS[1], v .. ':lease') or '0') >= now then return {'live'} end
  redis.call('HSET', KEYS[1], v .. ':state', 4, v .. ':abortedat', string.format('%.0f', now))
  redis.call('HDEL', KEYS[1], v .. ':lease')
  st, new = '4', 1
end
if st ~= '4' then return {'kept'} end
local by = 0
if redis.call('HEXISTS', KEYS[1], v .. ':abortedat') == 1 then by = 1 end
return {'collect', redis.call('HGET', KEYS[1], v .. ':bits') or '', new, by}
`)

// clearScript records that an aborted version's records are gone, unless
// a collector aborted it less than ARGV[2] ms ago. KEYS: versions. ARGV:
// version, grace ms. 1 if cleared.
var clearScript = redis.NewScript(luaNow + `
local v = ARGV[1]
if redis.call('HGET', KEYS[1], v .. ':state') ~= '4' then return 0 end
local at = redis.call('HGET', KEYS[1], v .. ':abortedat')
if at and tonumber(at) + tonumber(ARGV[2]) > now then return 0 end
redis.call('HDEL', KEYS[1], v .. ':bits', v .. ':abortedat', v .. ':lease')
return 1
`)

// collectGrace is how long after a collector aborted a version its buckets
// are unlinked again by later collections.
const collectGrace = store.DefaultStageLease

// renewLease is the Stager's renewal call. It does not wait for replicas
// (WithWait): a renewal a failover loses only shortens the lease, and the
// loader then fails safe.
func (s *Store) renewLease(ctx context.Context, inc string, v uint64, lease time.Duration) (bool, error) {
	ok, err := renewScript.Run(ctx, s.c, []string{s.versionsKey(inc)}, v, lease.Milliseconds()).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return ok == int64(1), nil
}

// CollectStages aborts the incident's staging versions whose lease expired
// and deletes the records of aborted versions that may still have some.
func (s *Store) CollectStages(ctx context.Context, incident string) ([]uint64, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%w: store closed", store.ErrUnavailable)
	}
	if checkIncident(incident) != nil {
		return nil, store.ErrNotFound
	}
	if _, err := s.Head(ctx, incident); err != nil {
		return nil, err
	}
	fields, err := s.c.HGetAll(ctx, s.versionsKey(incident)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	var candidates []uint64
	for f, val := range fields {
		vs, ok := strings.CutSuffix(f, ":state")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(vs, 10, 64)
		if err != nil {
			continue
		}
		if _, hasBits := fields[vs+":bits"]; val == "1" || (val == "4" && hasBits) {
			candidates = append(candidates, v)
		}
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i] < candidates[j] })
	var collected []uint64
	for _, v := range candidates {
		done, err := s.collect(ctx, incident, v)
		if err != nil {
			return collected, fmt.Errorf("collect %s v%d: %w", incident, v, err)
		}
		if done {
			collected = append(collected, v)
		}
	}
	return collected, nil
}

// collect aborts v if its lease expired and deletes its records. It
// reports whether v is one to report: aborted by this call, or an aborted
// version whose leftover records this call removed.
func (s *Store) collect(ctx context.Context, inc string, v uint64) (bool, error) {
	res, err := s.runScript(ctx, collectScript, []string{s.versionsKey(inc)}, v)
	if err != nil {
		return false, err
	}
	arr, _ := res.([]any)
	if len(arr) == 0 {
		return false, fmt.Errorf("%w: unexpected collect reply", store.ErrUnavailable)
	}
	if arr[0] != "collect" || len(arr) != 4 {
		return false, nil // live, or committed meanwhile
	}
	bitsStr, _ := arr[1].(string)
	aborted, byCollector := arr[2] == int64(1), arr[3] == int64(1)
	if bitsStr != "" {
		bits, err := parseBits(bitsStr)
		if err != nil {
			return false, err
		}
		if err := s.unlinkRecords(ctx, inc, v, bits); err != nil {
			return false, err
		}
	}
	cleared, err := s.clearAborted(ctx, inc, v, collectGrace)
	if err != nil {
		return false, err
	}
	return aborted || (cleared && !byCollector), nil
}

// clearAborted removes an aborted version's bucket count once its records
// are gone (see clearScript).
func (s *Store) clearAborted(ctx context.Context, inc string, v uint64, grace time.Duration) (bool, error) {
	ok, err := s.runScript(ctx, clearScript, []string{s.versionsKey(inc)}, v, grace.Milliseconds())
	if err != nil {
		return false, err
	}
	if ok == int64(1) {
		s.bitsCache.Delete(versionRef{inc, v})
		return true, nil
	}
	return false, nil
}
