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
if redis.replicate_commands then pcall(redis.replicate_commands) end

local owner, ttl, req = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local maxlen = tonumber(ARGV[6])

local h = redis.call('HMGET', KEYS[1], 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req')
if not h[1] then
  return {-1}
end
if h[1] ~= owner then
  return {0, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end
if ARGV[7] ~= '0' and h[3] ~= ARGV[7] then
  return {-2, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end
if h[6] and string.find(' ' .. h[6] .. ' ', ' ' .. req .. ' ', 1, true) then
  return {3, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end

local t = redis.call('TIME')
local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local expires = now + ttl
-- numbers go to redis.call as strings formatted with %d: Redis formats a
-- Lua number argument with printf("%.17g"), which costs more than the
-- command it feeds
local expires_s = string.format('%d', expires)
local list = req
local n = 1
for old in string.gmatch(h[6] or '', '%S+') do
  if n == 8 then break end
  list, n = list .. ' ' .. old, n + 1
end
redis.call('HSET', KEYS[1], 'expires_at', expires_s, 'req', list)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
if maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
    'event', 'renewed', 'type', ARGV[4], 'id', ARGV[5], 'owner', owner,
    'token', h[3], 'count', h[2], 'at', string.format('%d', now),
    'acquired_at', h[4], 'expires_at', expires_s, 'req', req)
end
return {1, owner, tonumber(h[2]), h[3], tonumber(h[4]), expires}
