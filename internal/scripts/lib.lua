-- lib.lua: the helpers the scripts share, written once. Package scripts
-- prepends this file to each script when it builds it, so the helpers are
-- locals of every script. No helper reads KEYS or ARGV: a script passes
-- them its own, and its header alone documents them.
--
-- Cost: a helper issues only the redis.call commands it names; calling a
-- Lua function costs no Redis command.

local fmt = string.format

-- the start and end of word w in the space-separated list l, or nil
local function find(l, w)
  local s, e = string.find(l, w, 1, true)
  while s do
    if (s == 1 or string.byte(l, s - 1) == 32) and (e == #l or string.byte(l, e + 1) == 32) then
      return s, e
    end
    s, e = string.find(l, w, s + 1, true)
  end
end

-- l without its word at s..e
local function cut(l, s, e)
  if s == 1 then return string.sub(l, e + 2) end
  return string.sub(l, 1, s - 2) .. string.sub(l, e + 1)
end

-- the request id list l of a lease with req in front, keeping the last 8
-- request ids applied to the lease, newest first
local function remember(l, req)
  local at, n = 0, 1
  while n < 8 do
    at = string.find(l, ' ', at + 1, true)
    if not at then break end
    n = n + 1
  end
  if at then l = string.sub(l, 1, at - 1) end
  if l ~= '' then return req .. ' ' .. l end
  return req
end

-- the lease in lock hash key: {owner, count, token, acquired_at,
-- expires_at, request ids}, owner false when the resource is free (HMGET)
local function read_lease(key)
  return redis.call('HMGET', key, 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req')
end

-- the reply {status, owner, count, token, acquired_at_ms, expires_at_ms}
-- of lease h (read_lease) as it stands
local function lease_reply(status, h)
  return {status, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5])}
end

-- Redis time in milliseconds (TIME)
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- raise the TTL of an owner index to twice ms when it falls below ms (a
-- number), so that most changes leave it alone (PTTL [+ PEXPIRE])
local function raise_ttl(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, fmt('%d', 2 * ms))
  end
end

-- write waiter queue q to key, keeping its TTL, or delete it when empty
local function store_queue(key, q)
  if q == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, q, 'KEEPTTL')
  end
end

-- tell the first waiter of queue q of a release, sending msg on its
-- channel <channel>:<waiter>, and take it out; returns the rest of q and
-- whether a waiter was told. note is the notification mode ("1" PUBLISH,
-- "2" SPUBLISH). With PUBLISH a waiter nobody listens for (its process
-- died, or its subscription is down) is taken out and the next one is
-- told: the release would be lost on it. SPUBLISH's count covers only the
-- node's own subscribers (a subscriber may be on a replica), so on
-- Cluster the first waiter is told whatever the count.
local function notify_first(q, note, channel, msg)
  while q ~= '' do
    local s, e = string.find(q, '^%S+')
    local ch = channel .. ':' .. string.sub(q, s, e)
    q = cut(q, s, e)
    if note ~= '1' then
      redis.call('SPUBLISH', ch, msg)
      return q, true
    end
    if redis.call('PUBLISH', ch, msg) > 0 then return q, true end
  end
  return q, false
end

