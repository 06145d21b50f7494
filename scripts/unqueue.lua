-- unqueue.lua: take a waiter out of a resource's waiter queue (its
-- coordinator's last waiter for the resource gave up).
--
-- KEYS[1] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (see acquire.lua)
-- KEYS[2] lock hash      <prefix>:{p}:lock:<type>:<id>
-- ARGV[1] waiter id (no spaces)
-- ARGV[2] release notification: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster)
-- ARGV[3] notification channel <prefix>:{p}:released (see release.lua)
-- ARGV[4] "type/id", the notification's message
-- Reply: 1 removed, 0 not queued, 2 not queued and the release it had
--   been told of passed on to the next queued waiter.
--
-- A waiter that is not queued while others are and the lease is free was
-- most likely taken out by the release that told it (release.lua), after
-- its last waiter left or while it was leaving: the release would be lost
-- on it, so it goes to the next queued waiter, as release.lua would have
-- sent it. Told of a release it did not get, a waiter only tries once
-- more.

local q = redis.call('GET', KEYS[1])
if not q then return 0 end

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

local function store(rest)
  if rest == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], rest, 'KEEPTTL')
  end
end

local s, e = find(q, ARGV[1])
if s then
  store(cut(q, s, e))
  return 1
end
local note = ARGV[2]
-- PTTL: -2 for a free resource (the worker ACL has no EXISTS)
if note == '0' or redis.call('PTTL', KEYS[2]) ~= -2 then return 0 end
-- the first queued waiter somebody listens for (see release.lua)
while q ~= '' do
  s, e = string.find(q, '^%S+')
  local ch = ARGV[3] .. ':' .. string.sub(q, s, e)
  q = cut(q, s, e)
  if note ~= '1' then
    redis.call('SPUBLISH', ch, ARGV[4])
    break
  end
  if redis.call('PUBLISH', ch, ARGV[4]) > 0 then break end
end
store(q)
return 2
