-- release.lua: drop one hold, every hold, or (admin) force the lease off.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] event stream   <prefix>:{p}:events
-- KEYS[3] owner index    <prefix>:{p}:owner:<owner>
-- KEYS[4] request memo   <prefix>:{p}:req:<request id>  (remembers a release that deleted the lease)
-- KEYS[5] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (see acquire.lua)
-- ARGV[1] owner (for force: the holder the admin saw; a different holder is not touched)
-- ARGV[2] request id (no spaces)
-- ARGV[3] resource type
-- ARGV[4] resource id
-- ARGV[5] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[6] mode: "one" drops one hold, "all" every hold, "force" every hold as an admin
--         (event "forced")
-- ARGV[7] how long the request memo lives, milliseconds
-- ARGV[8] release notification: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster)
-- ARGV[9] notification channel <prefix>:{p}:released; the message is "type/id", sent on
--         <channel>:<waiter> instead when addressed to the first queued waiter
-- ARGV[10] the releasing coordinator's id when waiters of its own wait for the resource, else "":
--         if it is the first queued, the lease is handed to them (status 4) and nothing is
--         published; queued behind another, it waits its turn like any waiter
-- Reply: {status, owner, count_left, token, acquired_at_ms, expires_at_ms}
--   status 1 released (lease deleted), 4 released and handed to the
--   releaser's own waiters (ARGV[10]), 2 decremented, 3 repeated request
--   id (nothing applied, the first reply), 0 held by another owner (the
--   holder's lease), -1 free. token is a decimal string.
--
-- The memo is a string "<token> <acquired_at> <expires_at> <owner>"
-- written with one SET PX. A release that deletes a lease runs GET HMGET
-- DEL SREM SET GET PUBLISH (+ TIME XADD): every redis.call costs, see
-- acquire.lua. With no queued waiter the message goes to the partition's
-- channel, which every waiting coordinator hears (those that do not queue
-- too); with one, to that waiter's channel alone (with PUBLISH, to the
-- first queued waiter that somebody listens for, else to the partition's
-- channel).
--
-- The helpers it calls (find, cut, remember, read_lease, ...) are those
-- of lib.lua, which package scripts prepends when it builds the script.

local owner, req, mode = ARGV[1], ARGV[2], ARGV[6]
local maxlen = ARGV[5]

local memo = redis.call('GET', KEYS[4])
if memo then
  local token, acq, exp, holder = string.match(memo, '^(%d+) (%d+) (%d+) (.*)$')
  return {3, holder, 0, token, tonumber(acq), tonumber(exp)}
end

local h = read_lease(KEYS[1])
local held = h[1]
if not held then
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  return {-1}
end
if held ~= owner then
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  return lease_reply(0, h)
end
local list = h[6] or ''
if find(list, req) then
  return lease_reply(3, h)
end

local handed = false -- the lease went to the releaser's own waiters
local count = tonumber(h[2]) - 1
local name = 'decremented'
if mode ~= 'one' or count <= 0 then
  count = 0
  name = 'released'
  if mode == 'force' then name = 'forced' end
end
local count_s = fmt('%d', count)

if count > 0 then
  redis.call('HSET', KEYS[1], 'count', count_s, 'req', remember(list, req))
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], ARGV[3] .. '/' .. ARGV[4])
  redis.call('SET', KEYS[4], h[3] .. ' ' .. h[4] .. ' ' .. h[5] .. ' ' .. held, 'PX', ARGV[7])
  local note = ARGV[8]
  if note ~= '0' then
    local msg = ARGV[3] .. '/' .. ARGV[4]
    local sent = false
    local q = redis.call('GET', KEYS[5])
    if q then
      -- hand the lease to the releaser's own waiters if it is the first
      -- queued (status 4: it wakes them itself), else to the first queued
      -- waiter: a releaser queued behind another process waits its turn
      local s, e = nil, nil
      if ARGV[10] ~= '' then s, e = find(q, ARGV[10]) end
      if s == 1 then
        q, sent, handed = cut(q, s, e), true, true
      else
        q, sent = notify_first(q, note, ARGV[9], msg)
      end
      store_queue(KEYS[5], q)
    end
    if not sent and note == '1' then
      redis.call('PUBLISH', ARGV[9], msg)
    elseif not sent then
      redis.call('SPUBLISH', ARGV[9], msg)
    end
  end
end
if maxlen ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*',
    'event', name, 'type', ARGV[3], 'id', ARGV[4], 'owner', held,
    'token', h[3], 'count', count_s, 'at', fmt('%d', now_ms()),
    'acquired_at', h[4], 'expires_at', h[5], 'req', req)
end
local status = 2
if handed then status = 4 elseif count == 0 then status = 1 end
return {status, held, count, h[3], tonumber(h[4]), tonumber(h[5])}
