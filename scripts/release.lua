-- release.lua: drop one hold, every hold, or (admin) force the lease off.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] event stream   <prefix>:{p}:events
-- KEYS[3] owner index    <prefix>:{p}:owner:<owner>
-- KEYS[4] request memo   <prefix>:{p}:req:<request id>  (remembers a release that deleted the lease)
-- ARGV[1] owner (for force: the holder the admin saw; a different holder is not touched)
-- ARGV[2] request id (no spaces)
-- ARGV[3] resource type
-- ARGV[4] resource id
-- ARGV[5] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[6] mode: "one" drops one hold, "all" every hold, "force" every hold as an admin
--         (event "forced")
-- ARGV[7] how long the request memo lives, milliseconds
-- ARGV[8] release notification: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster)
-- ARGV[9] notification channel <prefix>:{p}:released; the message is "type/id"
-- Reply: {status, owner, count_left, token, acquired_at_ms, expires_at_ms}
--   status 1 released (lease deleted), 2 decremented, 3 repeated request
--   id (nothing applied, the first reply), 0 held by another owner (the
--   holder's lease), -1 free.
if redis.replicate_commands then pcall(redis.replicate_commands) end

local owner, req, mode = ARGV[1], ARGV[2], ARGV[6]
local maxlen = tonumber(ARGV[5])

local memo = redis.call('HMGET', KEYS[4], 'owner', 'token', 'acquired_at', 'expires_at')
if memo[1] then
  return {3, memo[1], 0, memo[2], tonumber(memo[3]), tonumber(memo[4])}
end

local h = redis.call('HMGET', KEYS[1], 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req')
if not h[1] then
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  return {-1}
end
if h[1] ~= owner then
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  return {0, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end
if h[6] and string.find(' ' .. h[6] .. ' ', ' ' .. req .. ' ', 1, true) then
  return {3, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end

local count = tonumber(h[2]) - 1
local name = 'decremented'
if mode ~= 'one' or count <= 0 then
  count = 0
  name = 'released'
  if mode == 'force' then name = 'forced' end
end

if count > 0 then
  local list, n = req, 1
  for old in string.gmatch(h[6] or '', '%S+') do
    if n == 8 then break end
    list, n = list .. ' ' .. old, n + 1
  end
  redis.call('HSET', KEYS[1], 'count', string.format('%d', count), 'req', list)
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  redis.call('HSET', KEYS[4], 'owner', h[1], 'token', h[3], 'acquired_at', h[4], 'expires_at', h[5])
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
  local note = tonumber(ARGV[8])
  if note == 1 then
    redis.call('PUBLISH', ARGV[9], ARGV[3] .. '/' .. ARGV[4])
  elseif note == 2 then
    redis.call('SPUBLISH', ARGV[9], ARGV[3] .. '/' .. ARGV[4])
  end
end
if maxlen > 0 then
  -- numbers go to redis.call as strings formatted with %d: Redis formats
  -- a Lua number argument with printf("%.17g"), which costs more than
  -- the command it feeds
  local t = redis.call('TIME')
  local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
    'event', name, 'type', ARGV[3], 'id', ARGV[4], 'owner', h[1],
    'token', h[3], 'count', string.format('%d', count), 'at', string.format('%d', now),
    'acquired_at', h[4], 'expires_at', h[5], 'req', req)
end
local status = 2
if count == 0 then status = 1 end
return {status, h[1], count, h[3], tonumber(h[4]), tonumber(h[5])}
