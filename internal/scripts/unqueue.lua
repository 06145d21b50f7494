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
--
-- The helpers it calls (find, cut, remember, read_lease, ...) are those
-- of lib.lua, which package scripts prepends when it builds the script.

local q = read_queue(KEYS[1])
if not q then return 0 end

local s, e = find(q, ARGV[1])
if s then
  store_queue(KEYS[1], cut(q, s, e))
  return 1
end
local note = ARGV[2]
-- PTTL: -2 for a free resource (the worker ACL has no EXISTS)
if note == '0' or redis.call('PTTL', KEYS[2]) ~= -2 then return 0 end
-- the first queued waiter somebody listens for (see lib.lua)
store_queue(KEYS[1], (notify_first(q, note, ARGV[3], ARGV[4])))
return 2
