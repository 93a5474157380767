package redisstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// Tombstones of closed accounts live in 256 hashes, p{t:<b>}, b the top 8
// bits of the subject key: field = the 16-byte key, value = the erasure
// time (Unix seconds). A status read asks the subject's tombstone hash in
// the same pipeline as its pin, so the read stays one round trip.

const tombBits = 8

func (s *Store) tombKey(key store.Key) string {
	return s.prefix + "{t:" + strconv.FormatUint(uint64(bucket(key, tombBits)), 16) + "}"
}

// erasePinScript removes a subject's pin and idempotency records from one
// pin bucket. KEYS: pins bucket, idem bucket. ARGV: subject field. Returns
// the number of pins removed (0 or 1).
var erasePinScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
local t = redis.call('HKEYS', KEYS[2])
local k = #ARGV[1]
for _, f in ipairs(t) do
  if string.sub(f, -k) == ARGV[1] then redis.call('HDEL', KEYS[2], f) end
end
return n
`)

// Tombstone writes key's tombstone, then removes its pins and idempotency
// records incident by incident. ClaimPin writes its pin and then reads the
// tombstone (undoing the pin if it finds one), so a claim either sees the
// tombstone or wrote its pin before the tombstone existed and so before the
// removal below reads it. If Tombstone stops half way, calling it again
// finishes the job.
func (s *Store) Tombstone(ctx context.Context, key store.Key) (int, error) {
	field := string(key[:])
	tk := s.tombKey(key)
	// With WithWait, the tombstone is on the replicas before any pin goes.
	if _, err := s.runScript(ctx, tombstoneScript, s.feedKeys(tk), s.feedArgs("", field, time.Now().Unix())...); err != nil {
		return 0, err
	}
	ids, err := s.c.SMembers(ctx, s.incidentsKey()).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	removed := 0
	for _, inc := range ids {
		pinBits, err := s.pinBitsOf(ctx, inc)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return removed, err
		}
		pb := bucket(key, pinBits)
		res, err := s.runScript(ctx, erasePinScript, []string{s.pinsKey(inc, pb), s.idemKey(inc, pb)}, field)
		if err != nil {
			return removed, err
		}
		if n, ok := res.(int64); ok {
			removed += int(n)
		}
	}
	return removed, nil
}

// Tombstoned reports which keys are tombstoned, in one pipeline of HMGETs
// grouped by tombstone hash.
func (s *Store) Tombstoned(ctx context.Context, keys []store.Key) ([]bool, error) {
	out := make([]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	byHash := map[string][]int{}
	for i, k := range keys {
		h := s.tombKey(k)
		byHash[h] = append(byHash[h], i)
	}
	type group struct {
		idx []int
		cmd *redis.SliceCmd
	}
	groups := make([]group, 0, len(byHash))
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for h, idx := range byHash {
			fields := make([]string, len(idx))
			for j, i := range idx {
				fields[j] = string(keys[i][:])
			}
			groups = append(groups, group{idx, p.HMGet(ctx, h, fields...)})
		}
		return nil
	})
	if err := cmdErr(cmds, err); err != nil {
		return nil, err
	}
	for _, g := range groups {
		for j, v := range g.cmd.Val() {
			out[g.idx[j]] = v != nil
		}
	}
	return out, nil
}
