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
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms}
--   status 1 renewed, 3 repeated request id (nothing applied),
--   0 held by another owner (the holder's lease), -1 free (no lease),
--   -2 the owner holds a lease with another token (that lease).
--   token is a decimal string.
--
-- A renewal runs HMGET TIME HSET PEXPIRE PTTL (+ XADD); the owner index's
-- TTL is raised to twice the lease's when it falls below it (see
-- acquire.lua).

local owner, req = ARGV[1], ARGV[3]

local h = redis.call('HMGET', KEYS[1], 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req')
local held = h[1]
if not held then
  return {-1}
end
if held ~= owner then
  return {0, held, tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end
if ARGV[7] ~= '0' and h[3] ~= ARGV[7] then
  return {-2, held, tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end
local list = h[6] or ''
local s, e = string.find(list, req, 1, true)
while s do
  if (s == 1 or string.byte(list, s - 1) == 32) and (e == #list or string.byte(list, e + 1) == 32) then
    return {3, held, tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
  end
  s, e = string.find(list, req, s + 1, true)
end

local fmt = string.format
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expires_s = fmt('%d', now + ttl)
-- remember the last 8 request ids applied to the lease, newest first
local cut, n = 0, 1
while n < 8 do
  cut = string.find(list, ' ', cut + 1, true)
  if not cut then break end
  n = n + 1
end
if cut then list = string.sub(list, 1, cut - 1) end
if list ~= '' then list = req .. ' ' .. list else list = req end
redis.call('HSET', KEYS[1], 'expires_at', expires_s, 'req', list)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], fmt('%d', 2 * ttl)) end
if ARGV[6] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
    'event', 'renewed', 'type', ARGV[4], 'id', ARGV[5], 'owner', owner,
    'token', h[3], 'count', h[2], 'at', fmt('%d', now),
    'acquired_at', h[4], 'expires_at', expires_s, 'req', req)
end
return {1, owner, tonumber(h[2]), h[3], tonumber(h[4]), now + ttl}
