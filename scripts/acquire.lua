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
-- Numbers go to redis.call as strings formatted once with %d: Redis
-- formats a Lua number argument with printf("%.17g"), which costs more
-- than the command it feeds.
local function str(n) return string.format('%d', n) end
local now_s = str(now)

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

-- count, acquired and expires are strings
local function event(name, token, count, acquired, expires)
  if maxlen > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
      'event', name, 'type', ARGV[4], 'id', ARGV[5], 'owner', owner,
      'token', token, 'count', count, 'at', now_s,
      'acquired_at', acquired, 'expires_at', expires, 'req', req)
  end
end

-- ms is a number, ms_s the same as a string
local function extend_index(ms, ms_s)
  local pt = redis.call('PTTL', KEYS[4])
  if pt < ms then redis.call('PEXPIRE', KEYS[4], ms_s) end
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
  local count_s, expires_s, left_s = str(count), str(expires), str(expires - now)
  redis.call('HSET', KEYS[1], 'count', count_s, 'expires_at', expires_s, 'req', remember(h[6], req))
  redis.call('PEXPIRE', KEYS[1], left_s)
  extend_index(expires - now, left_s)
  event('reentered', h[3], count_s, h[4], expires_s)
  return {2, owner, count, h[3], tonumber(h[4]), expires}
end

-- token = max(last + 1, now_us), in one command when the clock is ahead
-- of the last token (always, but for acquisitions within a microsecond
-- or a clock that went back): set the counter to now_us, reading last
local token = str(now_us)
local last = tonumber(redis.call('SET', KEYS[2], token, 'GET') or '0')
if last >= now_us then
  token = str(last + 1)
  redis.call('SET', KEYS[2], token)
end
local expires = now + ttl
local expires_s = str(expires)
redis.call('HSET', KEYS[1], 'owner', owner, 'count', '1', 'token', token,
  'acquired_at', now_s, 'expires_at', expires_s, 'req', req)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[4] .. '/' .. ARGV[5])
extend_index(ttl, ARGV[2])
event('acquired', token, '1', now_s, expires_s)
return {1, owner, 1, token, now, expires}
