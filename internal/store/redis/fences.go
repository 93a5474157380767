package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// fencesKey is an incident's publish fences (see store.Fences), in the
// incident's slot: a hash of fence id -> "<version covered>:<deadline in
// Unix milliseconds of the Redis clock>".
func (s *Store) fencesKey(inc string) string { return s.prefix + "{i:" + inc + "}:fences" }

// fenceLua is the check the claim script and fencedScript share: a live
// fence in the hash KEYS[n] covering version v. Deadlines are read against
// Redis's own clock (TIME), so replicas' clocks do not matter.
const fenceLua = `
local function fenced(key, v)
  local f = redis.call('HVALS', key)
  if #f == 0 then return false end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, x in ipairs(f) do
    local sep = string.find(x, ':', 1, true)
    if sep and tonumber(string.sub(x, sep + 1)) > now and v <= tonumber(string.sub(x, 1, sep - 1)) then
      return true
    end
  end
  return false
end
`

// fenceScript sets a fence if the visible version is the one expected, or
// renews a live fence of the same id (keeping what it covers), dropping
// expired fences. KEYS: head, fences. ARGV: visible, id, ttl in
// milliseconds.
var fenceScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'notfound' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local upto = nil
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], ':', 1, true)
  if not sep or tonumber(string.sub(all[i + 1], sep + 1)) <= now then
    redis.call('HDEL', KEYS[2], all[i])
  elseif all[i] == ARGV[2] then
    upto = string.sub(all[i + 1], 1, sep - 1)
  end
end
if not upto then
  if tonumber(redis.call('HGET', KEYS[1], 'visible') or '0') ~= tonumber(ARGV[1]) then return 'conflict' end
  upto = ARGV[1]
end
redis.call('HSET', KEYS[2], ARGV[2], upto .. ':' .. (now + tonumber(ARGV[3])))
return 'ok'
`)

// fencedScript reports (1 or 0) whether a live fence covers a version: the
// check a Cluster claim makes after its write. KEYS: fences. ARGV: version.
var fencedScript = redis.NewScript(fenceLua + `
if fenced(KEYS[1], tonumber(ARGV[1])) then return 1 end
return 0
`)

// Fence sets or renews fence id covering the versions up to visible.
func (s *Store) Fence(ctx context.Context, incident string, visible uint64, id string, ttl time.Duration) error {
	if id == "" || ttl < time.Millisecond {
		return fmt.Errorf("redisstore: fence needs an id and a positive ttl")
	}
	res, err := s.runScript(ctx, fenceScript, []string{s.headKey(incident), s.fencesKey(incident)}, visible, id, ttl.Milliseconds())
	if err != nil {
		return err
	}
	switch res {
	case "ok":
		return nil
	case "notfound":
		return fmt.Errorf("incident: %w", store.ErrNotFound)
	case "conflict":
		return fmt.Errorf("fence %s: visible version is not v%d: %w", incident, visible, store.ErrConflict)
	}
	return fmt.Errorf("%w: unexpected fence reply", store.ErrUnavailable)
}

// Unfence lifts fence id.
func (s *Store) Unfence(ctx context.Context, incident, id string) error {
	if err := s.c.HDel(ctx, s.fencesKey(incident), id).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// fencedAfterWrite is a Cluster claim's fence check, made after its pin
// write (the fences are in another slot): a publish fences before it reads
// the pins, so either its read finds the pin or this finds the fence.
func (s *Store) fencedAfterWrite(ctx context.Context, incident string, version uint64) (bool, error) {
	n, err := fencedScript.Run(ctx, s.c, []string{s.fencesKey(incident)}, version).Int64()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}
