-- acquire.lua: take a free resource, or re-enter the owner's own lease.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] fence counter  <prefix>:{p}:fence
-- KEYS[3] event stream   <prefix>:{p}:events
-- KEYS[4] owner index    <prefix>:{p}:owner:<owner>  (set of "type/id")
-- ARGV[1] owner
-- ARGV[2] ttl in milliseconds (integer >= 1)
-- ARGV[3] request id (no spaces)
-- ARGV[4] resource type
-- ARGV[5] resource id
-- ARGV[6] stream MAXLEN ~ cap; 0 switches the outbox off
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms}
--   status 1 acquired, 2 re-entered, 3 repeated request id (nothing
--   applied, the lease as it stands), 0 conflict (the holder's lease).
--   token is a decimal string: Lua numbers are doubles.
if redis.replicate_commands then pcall(redis.replicate_commands) end

local owner, ttl, req = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local maxlen = tonumber(ARGV[6])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)

local function seen(list, id)
  return list and string.find(' ' .. list .. ' ', ' ' .. id .. ' ', 1, true) ~= nil
end

-- remember the last 8 request ids applied to the lease
local function remember(list, id)
  local out, n = id, 1
  if list then
    for old in string.gmatch(list, '%S+') do
      if n == 8 then break end
      out, n = out .. ' ' .. old, n + 1
    end
  end
  return out
end

local function event(name, token, count, acquired, expires)
  if maxlen > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
      'event', name, 'type', ARGV[4], 'id', ARGV[5], 'owner', owner,
      'token', token, 'count', count, 'at', now,
      'acquired_at', acquired, 'expires_at', expires, 'req', req)
  end
end

local function extend_index(ms)
  local pt = redis.call('PTTL', KEYS[4])
  if pt < ms then redis.call('PEXPIRE', KEYS[4], ms) end
end

local h = redis.call('HMGET', KEYS[1], 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req')
if h[1] then
  if h[1] ~= owner then
    return {0, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
  end
  if seen(h[6], req) then
    return {3, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
  end
  local count = tonumber(h[2]) + 1
  local expires = math.max(tonumber(h[5]), now + ttl)
  redis.call('HSET', KEYS[1], 'count', count, 'expires_at', expires, 'req', remember(h[6], req))
  redis.call('PEXPIRE', KEYS[1], expires - now)
  extend_index(expires - now)
  event('reentered', h[3], count, h[4], expires)
  return {2, owner, count, h[3], tonumber(h[4]), expires}
end

local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = string.format('%.0f', math.max(last + 1, now_us))
local expires = now + ttl
redis.call('SET', KEYS[2], token)
redis.call('HSET', KEYS[1], 'owner', owner, 'count', 1, 'token', token,
  'acquired_at', now, 'expires_at', expires, 'req', req)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[4], ARGV[4] .. '/' .. ARGV[5])
extend_index(ttl)
event('acquired', token, 1, now, expires)
return {1, owner, 1, token, now, expires}
