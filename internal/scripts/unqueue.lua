-- unqueue.lua: take a waiter out of a resource's waiter queue (its
-- coordinator's last waiter for the resource gave up).
--
-- KEYS[1] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (see acquire.lua)
-- KEYS[2] lock hash      <prefix>:{p}:lock:<type>:<id>
-- ARGV[1] waiter id (no spaces)
-- ARGV[2] release notification: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster)
-- ARGV[3] notification channel <prefix>:{p}:released (see release.lua)
-- ARGV[4] "type/id", the notification's message
-- Reply: 1 removed, 0 not queued, 2 removed, and the next queued waiter
--   told that the resource may be its.
--
-- A waiter keeps its place until it acquires (see acquire.lua), also
-- after a release told it of its turn: the first queued waiter that
-- leaves while the resource has room (free, or shared under its cap)
-- passes its turn on to the next, as release.lua would have.
--
-- Cost: GET (nothing queued), GET TIME SET|DEL, or for the first with
-- others behind it GET TIME HGETALL SET PUBLISH.
--
-- The helpers it calls (queue_list, read_state, notify_first, ...) are
-- those of lib.lua, which package scripts prepends when it builds the
-- script.

local q = read_queue(KEYS[1])
if not q then return 0 end
local now = redis_time()
local l = queue_list(q, now)
local p = queue_pos(l, ARGV[1])
if not p then return 0 end
table.remove(l, p)
local told = false
if p == 1 and #l > 0 and ARGV[2] ~= '0' then
  local st = read_state(KEYS[2])
  if st then prune(st, now) end
  if st and (st.n == 0 or st.shared and (st.cap == 0 or st.n < st.cap)) then
    told = notify_first(l, ARGV[2], ARGV[3], ARGV[4])
  end
end
store_list(KEYS[1], l)
if told then return 2 end
return 1
