package redisstore

import "github.com/redis/go-redis/v9"

// Version states as stored in "<v>:state". stateDeleting is internal: a
// version DeleteVersion is removing (reported as aborted).
const (
	stateDeleting = "5"
)

// stageScript allocates the next version of an incident, creating the
// incident on first use, with a lease of ARGV[3] ms on the server's clock.
// KEYS: head, versions. ARGV: info, default pinbits, lease ms.
var stageScript = redis.NewScript(luaNow + `
local n = redis.call('HINCRBY', KEYS[1], 'latest', 1)
redis.call('HSETNX', KEYS[1], 'pinbits', ARGV[2])
redis.call('HSETNX', KEYS[1], 'visible', 0)
redis.call('HSET', KEYS[2], n, ARGV[1], n .. ':state', 1, n .. ':lease', string.format('%.0f', now + tonumber(ARGV[3])))
return n
`)

// setBitsScript records a staging version's bucket count before its first
// records are written, if its lease is live. KEYS: versions. ARGV:
// version, bits.
var setBitsScript = redis.NewScript(luaNow + `
if redis.call('HGET', KEYS[1], ARGV[1] .. ':state') ~= '1' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':lease') or '0') < now then return 2 end
redis.call('HSET', KEYS[1], ARGV[1] .. ':bits', ARGV[2])
return 1
`)

// commitScript marks a verified staging version staged, if its lease is
// live: 1 if committed, 0 if not staging, 2 if the lease expired.
// KEYS: versions, manifest (+ changes, seq). ARGV: version, info, manifest
// (+ incident, change log length).
var commitScript = redis.NewScript(luaNow + changeLua + `
if redis.call('HGET', KEYS[1], ARGV[1] .. ':state') ~= '1' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':lease') or '0') < now then return 2 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. ':state', 2)
redis.call('HDEL', KEYS[1], ARGV[1] .. ':lease')
if KEYS[4] then change(KEYS[3], KEYS[4], ARGV[5], '3', ARGV[4], '', ARGV[1]) end
return 1
`)

// abortScript marks a staging version aborted (its loader's own Abort); 0 if it is not staging or
// aborted (a committed version is left alone). KEYS: versions. ARGV: version.
var abortScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], ARGV[1] .. ':state')
if st == '1' then
  redis.call('HSET', KEYS[1], ARGV[1] .. ':state', 4)
  redis.call('HDEL', KEYS[1], ARGV[1] .. ':lease')
  return 1
end
if st == '4' then return 1 end
return 0
`)

// publishScript flips the visible version: the version must be staged or
// published, the visible version must be ARGV[2] and lower than the
// version. The pointer is written last. KEYS: head, versions.
// ARGV: version, expected visible, publish info, channel, message (+ KEYS
// changes, seq; ARGV incident, change log length).
var publishScript = redis.NewScript(changeLua + `
local st = redis.call('HGET', KEYS[2], ARGV[1] .. ':state')
if not st then return 'notfound' end
if st ~= '2' and st ~= '3' then return 'notstaged' end
local vis = tonumber(redis.call('HGET', KEYS[1], 'visible') or '0')
if vis ~= tonumber(ARGV[2]) or tonumber(ARGV[1]) <= vis then return 'conflict' end
if st == '2' then
  redis.call('HSET', KEYS[2], ARGV[1] .. ':state', 3, ARGV[1] .. ':pub', ARGV[3])
end
redis.call('HSET', KEYS[1], 'visible', ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[5])
if KEYS[4] then change(KEYS[3], KEYS[4], ARGV[7], '2', ARGV[6], '', ARGV[1]) end
return 'ok'
`)

// claimScript replaces a subject's pin and records the idempotency key, on
// the pin bucket's slot. It refuses (returns 'conflict' or 'idem') if the
// idempotency key was used, if the current pin's notice id is not the one
// expected, or if the new version is lower than the current pin's. It
// returns {'ok', previous pin or ”} so that a claim can be undone.
// KEYS: pins bucket, idem bucket. ARGV: subject field, has old ('0'/'1'),
// old notice id, next pin, next version, idem field. Outside a Cluster,
// KEYS 3 to 5 (versions, head, the subject's tombstone hash) make it also
// refuse a version that is not pinnable ('unpinnable', 'notfound') and a
// tombstoned subject ('erased'), and KEYS 6 (the incident's fences) a
// version a publish fenced ('fenced', see store.Fences).
//
// A pin is store.AppendPin: 0x01, uvarint version, status byte, uvarint
// cohorts, uvarint practice, varint time, uvarint len, notice id.
var claimScript = redis.NewScript(fenceLua + changeLua + `
local function uvarint(s, pos)
  local x, mul = 0, 1
  while true do
    local b = string.byte(s, pos)
    if not b then return error('corrupt pin') end
    pos = pos + 1
    x = x + (b % 128) * mul
    if b < 128 then return x, pos end
    mul = mul * 128
  end
end
if redis.call('HEXISTS', KEYS[2], ARGV[6]) == 1 then return {'idem'} end
if KEYS[3] then
  local st = redis.call('HGET', KEYS[3], ARGV[5] .. ':state')
  if st ~= '2' and st ~= '3' then
    if not st and tonumber(ARGV[5]) > tonumber(redis.call('HGET', KEYS[4], 'latest') or '0') then
      return {'notfound'}
    end
    return {'unpinnable'}
  end
end
if KEYS[5] and redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then return {'erased'} end
if KEYS[6] and fenced(KEYS[6], tonumber(ARGV[5])) then return {'fenced'} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  if ARGV[2] == '1' then return {'conflict'} end
  cur = ''
else
  if ARGV[2] ~= '1' then return {'conflict'} end
  local ver, pos = uvarint(cur, 2)
  local _
  _, pos = uvarint(cur, pos + 1)
  _, pos = uvarint(cur, pos)
  _, pos = uvarint(cur, pos)
  local n
  n, pos = uvarint(cur, pos)
  if string.sub(cur, pos, pos + n - 1) ~= ARGV[3] then return {'conflict'} end
  if tonumber(ARGV[5]) < ver then return {'conflict'} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[6], ARGV[4])
if KEYS[8] then change(KEYS[7], KEYS[8], ARGV[8], '1', ARGV[7], ARGV[1], ARGV[4]) end
return {'ok', cur}
`)

// unclaimScript undoes a claim whose version turned out to be deleted,
// if nothing changed the pin since. KEYS: pins bucket, idem bucket.
// ARGV: subject field, pin written, previous pin (” for none), idem field.
var unclaimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  end
end
if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[4])
end
return 1
`)

// markDeletingScript marks a version deleting unless it is visible.
// KEYS: head, versions. ARGV: version. Returns {'ok', bits or ”},
// {'notfound'} or {'visible'}.
var markDeletingScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[2], ARGV[1] .. ':state')
if not st then return {'notfound'} end
if tonumber(redis.call('HGET', KEYS[1], 'visible') or '0') == tonumber(ARGV[1]) then
  return {'visible'}
end
if st ~= '5' then
  redis.call('HSET', KEYS[2], ARGV[1] .. ':prev', st, ARGV[1] .. ':state', 5)
end
return {'ok', redis.call('HGET', KEYS[2], ARGV[1] .. ':bits') or ''}
`)

// unmarkDeletingScript restores the state a version had before
// markDeletingScript. KEYS: versions. ARGV: version.
var unmarkDeletingScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1] .. ':state') == '5' then
  local prev = redis.call('HGET', KEYS[1], ARGV[1] .. ':prev')
  redis.call('HSET', KEYS[1], ARGV[1] .. ':state', prev)
  redis.call('HDEL', KEYS[1], ARGV[1] .. ':prev')
end
return 1
`)

// finishDeleteScript removes a deleting version's metadata once its records
// are gone. KEYS: versions, manifest (+ changes, seq). ARGV: version (+
// incident, change log length).
var finishDeleteScript = redis.NewScript(changeLua + `
if redis.call('HGET', KEYS[1], ARGV[1] .. ':state') ~= '5' then return 0 end
local v = ARGV[1]
redis.call('HDEL', KEYS[1], v, v .. ':state', v .. ':pub', v .. ':bits', v .. ':prev', v .. ':lease', v .. ':abortedat')
redis.call('DEL', KEYS[2])
if KEYS[4] then change(KEYS[3], KEYS[4], ARGV[3], '5', ARGV[2], '', ARGV[1]) end
return 1
`)

// dumpScript returns a records bucket as {has sentinel, number of fields,
// concatenated fields and values}: 16-byte keys and self-delimiting
// records, so one string per bucket instead of a map. KEYS: bucket.
var dumpScript = redis.NewScript(`
local t = redis.call('HGETALL', KEYS[1])
return {redis.call('HEXISTS', KEYS[1], ''), #t / 2, table.concat(t)}
`)
