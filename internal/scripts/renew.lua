-- renew.lua: set the expiry of the owner's lease to now + ttl.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] event stream   <prefix>:{p}:events
-- KEYS[3] owner index    <prefix>:{p}:owner:<owner>
-- ARGV[1] owner
-- ARGV[2] ttl in milliseconds (integer >= 1)
-- ARGV[3] request id (no spaces)
-- ARGV[4] resource type
-- ARGV[5] resource id
-- ARGV[6] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[7] expected fencing token, decimal; "0" renews whatever lease the owner holds
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms,
--         remaining_ms, meta, mode, cap, holders, queued} (see acquire.lua)
--   status 1 renewed, 3 repeated request id (nothing applied),
--   0 held by another owner (the holder's lease), -1 free (no lease),
--   -2 the owner holds a lease with another token (that lease).
--   token is a decimal string.
--   An error reply ("ERR lockcoord: ...") changed nothing: a corrupt
--   lease hash, a stream that refused the event (see lib.lua).
--
-- A renewal runs HMGET TIME XADD HSET PEXPIRE PTTL, in that order: the
-- event goes first, so that a stream that refuses it leaves the lease as
-- it was; the owner index's TTL is raised to twice the lease's when it
-- falls below it (see acquire.lua).
--
-- The helpers it calls (find, cut, remember, read_lease, ...) are those
-- of lib.lua, which package scripts prepends when it builds the script.

local owner, req = ARGV[1], ARGV[3]

local h, why = read_lease(KEYS[1])
if not h then return fail(why) end
local held = h[1]
if not held then
  return {-1}
end
if held ~= owner then
  return lease_reply(0, h)
end
if ARGV[7] ~= '0' and h[3] ~= ARGV[7] then
  return lease_reply(-2, h)
end
local list = h[6] or ''
local now = redis_time()
if find(list, req) then
  return lease_reply(3, h, now)
end

local ttl = tonumber(ARGV[2])
local expires_s = fmt('%d', now + ttl)
why = append_event(KEYS[2], ARGV[6], event_fields('renewed', ARGV[4], ARGV[5], owner,
  h[3], h[2], fmt('%d', now), h[4], expires_s, req, h[7]))
if why then return fail(why) end
redis.call('HSET', KEYS[1], 'expires_at', expires_s, 'req', remember(list, req))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
raise_ttl(KEYS[3], ttl)
return reply(1, owner, tonumber(h[2]), h[3], tonumber(h[4]), now + ttl, now, h[7])
