-- unqueue.lua: take a waiter out of a resource's waiter queue (its
-- coordinator's last waiter for the resource gave up).
--
-- KEYS[1] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (see acquire.lua)
-- ARGV[1] waiter id (no spaces)
-- Reply: 1 removed, 0 not queued.

local q = redis.call('GET', KEYS[1])
if not q then return 0 end
local w = ARGV[1]
local s, e = string.find(q, w, 1, true)
while s and not ((s == 1 or string.byte(q, s - 1) == 32) and (e == #q or string.byte(q, e + 1) == 32)) do
  s, e = string.find(q, w, s + 1, true)
end
if not s then return 0 end
local rest
if s == 1 then rest = string.sub(q, e + 2) else rest = string.sub(q, 1, s - 2) .. string.sub(q, e + 1) end
if rest == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], rest, 'KEEPTTL')
end
return 1
