-- release.lua: drop one hold, every hold, or (admin) force the lease off;
-- on a shared resource, of the owner's own hold (see acquire.lua).
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] event stream   <prefix>:{p}:events
-- KEYS[3] owner index    <prefix>:{p}:owner:<owner>
-- KEYS[4] request memo   <prefix>:{p}:req:<type>:<id>/<request id>  (remembers a release that deleted the lease)
-- KEYS[5] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (see acquire.lua)
-- KEYS[6] expiry index   <prefix>:{p}:expiry  (see lib.lua's expiry_member)
-- ARGV[1] owner (for force: the holder the admin saw; a different holder is not touched)
-- ARGV[2] request id (no spaces)
-- ARGV[3] resource type
-- ARGV[4] resource id
-- ARGV[5] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[6] mode: "one" drops one hold, "all" every hold, "force" every hold as an admin
--         (event "forced"; on a shared resource, of the holder ARGV[1] alone), and a
--         corrupt lease key whatever its type, contents or owner
-- ARGV[7] how long the request memo lives, milliseconds
-- ARGV[8] release notification: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster)
-- ARGV[9] notification channel <prefix>:{p}:released; the message is "type/id", sent on
--         <channel>:<waiter> instead when addressed to the first queued waiter
-- ARGV[10] the releasing coordinator's id when waiters of its own wait for the resource, else "":
--         if it is the first queued, the lease is handed to them (status 4) and nothing is
--         published; queued behind another, it waits its turn like any waiter
-- ARGV[11] force: the operator who forced the lease off, the "forced" event's "by"
--         field ("" when not known); ignored by the other modes
-- Reply: {status, owner, count_left, token, acquired_at_ms, expires_at_ms,
--         remaining_ms, meta, mode, cap, holders, queued} (see acquire.lua;
--         remaining_ms 0 once the hold is gone)
--   status 1 released (the owner's hold ended: the lease deleted, or on
--   a shared resource the owner's fields; holders says how many are
--   left), 4 released and handed to the releaser's own waiters
--   (ARGV[10]), 2 decremented, 3 repeated request id (nothing applied,
--   the first reply), 0 held by another owner (the holder's lease), -1
--   free. token is a decimal string.
--   An error reply ("ERR lockcoord: ...") changed nothing: a corrupt
--   lease (but for force), a stream that refused the event (see lib.lua).
--   Force of a corrupt lease replies status 1 with the fields that could
--   be read ("" and 0 for the others).
--
-- The memo is a string "<token> <acquired_at> <expires_at> <owner>"
-- written with one SET PX; it is the resource's, so that it answers only
-- a retry of the same release of the same resource. A release that
-- deletes a lease runs GET HGETALL TIME XADD DEL SREM ZREM SET GET PUBLISH
-- (the end of one shared hold among others: HDEL PEXPIRE for DEL):
-- every redis.call costs, see acquire.lua. With no queued waiter the
-- message goes to the partition's channel, which every waiting
-- coordinator hears (those that do not queue too); with one, to that
-- waiter's channel alone (with PUBLISH, to the first queued waiter that
-- somebody listens for, else to the partition's channel).
--
-- Order: read and check everything, append the event, then write, which
-- cannot fail once the reads succeeded (a memo, owner index or queue key
-- of another type is read as absent and replaced).
--
-- The helpers it calls (find, cut, remember, read_state, ...) are those of
-- core.lua and lib.lua (see package scripts: the fast path below runs
-- before lib.lua's are defined).

local owner, req, mode = ARGV[1], ARGV[2], ARGV[6]
local maxlen = ARGV[5]
local member = ARGV[3] .. '/' .. ARGV[4]

-- Fast path: the end of the owner's exclusive lease (its last hold, or
-- every hold), no request memo, the request id not applied, nobody
-- queued: the common case, done with core.lua's helpers alone, command
-- for command as below (GET HGETALL GET TIME XADD DEL SREM ZREM SET
-- PUBLISH). When the case does not apply, what it read goes to the
-- general path (pre_memo, pre_all, pre_queue), which decides as if the
-- fast path had not run: it wrote nothing.
local pre_memo, pre_all, pre_queue
if mode ~= 'force' then
  pre_memo = redis.pcall('GET', KEYS[4])
  if pre_memo == false then pre_all = redis.pcall('HGETALL', KEYS[1]) end
end
local fast = pre_all and exclusive_hold(KEYS[1], pre_all)
if fast and (fast[1] ~= owner or (fast[2] ~= '1' and mode ~= 'all') or find(fast[6], req)) then fast = nil end
if fast then pre_queue = redis.pcall('GET', KEYS[5]) end
if fast and pre_queue == false then
  local now = redis_time()
  local why = append_event(KEYS[2], maxlen,
    event_fields('released', ARGV[3], ARGV[4], owner, fast[3], '0', fmt('%d', now), fast[4], fast[5], req, fast[7]))
  if why then return fail(why) end
  redis.call('DEL', KEYS[1])
  index_remove(KEYS[3], member)
  expiry_drop(KEYS[6], maxlen, expiry_member(ARGV[3], ARGV[4], fast, {}))
  redis.call('SET', KEYS[4], fast[3] .. ' ' .. fast[4] .. ' ' .. fast[5] .. ' ' .. owner, 'PX', ARGV[7])
  if ARGV[8] == '1' then
    redis.call('PUBLISH', ARGV[9], member)
  elseif ARGV[8] ~= '0' then
    redis.call('SPUBLISH', ARGV[9], member)
  end
  local r = reply(1, owner, 0, fast[3], tonumber(fast[4]), tonumber(fast[5]), nil, fast[7])
  r[11] = 0
  return r
end
--@lib

local memo = pre_memo
if memo == nil then memo = redis.pcall('GET', KEYS[4]) end
if type(memo) == 'string' then
  local token, acq, exp, holder = string.match(memo, '^(%d+) (%d+) (%d+) (.*)$')
  if token then
    return reply(3, holder, 0, token, tonumber(acq), tonumber(exp))
  end
end

local st, why = read_state(KEYS[1], pre_all)
local now -- Redis TIME, read once it is needed (shared holds expire by it)
local h, count, list
local raw -- force of a corrupt lease: its fields as they were
if st then
  if st.shared then
    now = redis_time()
    prune(st, now)
  end
  h = st.holders[owner]
  if not h then
    index_remove(KEYS[3], member)
    if st.n == 0 then return {-1} end
    return hold_reply(0, first_other(st, owner), now, st)
  end
  list = h[6] or ''
  if find(list, req) then
    return hold_reply(3, h, now or redis_time(), st)
  end
  count = tonumber(h[2]) - 1
elseif mode == 'force' then
  -- a corrupt lease key, whatever its type: removed, its event carrying
  -- the fields as they were ("" where none could be read), its reply
  -- and memo those that are well formed ("" and 0 for the others)
  local f = redis.pcall('HMGET', KEYS[1], 'owner', 'token', 'acquired_at', 'expires_at')
  if failed(f) then f = {} end
  local function text(v) if type(v) == 'string' then return v end return '' end
  raw = {text(f[1]), text(f[2]), text(f[3]), text(f[4])}
  local function good(v, ok) if ok then return v end return '0' end
  h = {raw[1], '0', good(raw[2], is_token(raw[2])), good(raw[3], digits(raw[3], 15)), good(raw[4], digits(raw[4], 15))}
  st, count = {shared = false, cap = 0, n = 1, holders = {}, gone = {}}, 0
else
  return fail(why)
end
local held = h[1]

local handed = false -- the lease went to the releaser's own waiters
local name = 'decremented'
if mode ~= 'one' or count <= 0 then
  count = 0
  name = 'released'
  if mode == 'force' then name = 'forced' end
end
local count_s = fmt('%d', count)

local ev = h -- a corrupt lease's event: the fields as they were
if raw then ev = {raw[1], '0', raw[2], raw[3], raw[4]} end
now = now or redis_time()
local fields = hold_event(name, ARGV[3], ARGV[4], ev, st, count_s, fmt('%d', now), ev[5], req)
if mode == 'force' then
  fields[#fields + 1] = 'by'
  fields[#fields + 1] = ARGV[11] or ''
end
why = append_event(KEYS[2], maxlen, fields)
if why then return fail(why) end

h[2] = count_s
if count > 0 then
  h[6] = remember(list, req)
  if st.shared then
    write_shared(KEYS[1], st, now, {owner})
  else
    redis.call('HSET', KEYS[1], 'count', count_s, 'req', h[6])
  end
else
  if st.shared then
    st.holders[owner], st.n = nil, st.n - 1
    write_shared(KEYS[1], st, now, {}, false, owner)
  else
    st.n = 0
    redis.call('DEL', KEYS[1])
  end
  index_remove(KEYS[3], member)
  expiry_drop(KEYS[6], maxlen, expiry_member(ARGV[3], ARGV[4], h, st))
  redis.call('SET', KEYS[4], h[3] .. ' ' .. h[4] .. ' ' .. h[5] .. ' ' .. held, 'PX', ARGV[7])
  local note = ARGV[8]
  if note ~= '0' then
    local msg = member
    local sent = false
    local l = queue_list(read_queue(KEYS[5], pre_queue), now)
    if #l > 0 then
      -- the releaser's own waiters get the turn if it is the first queued
      -- (status 4: it wakes them itself), else the first queued waiter is
      -- told: a releaser queued behind another process waits its turn.
      -- Either keeps its place until it acquires.
      local changed = false
      if ARGV[10] ~= '' and l[1][1] == ARGV[10] then
        sent, handed = true, true
      else
        sent, changed = notify_first(l, note, ARGV[9], msg)
      end
      if changed then store_list(KEYS[5], l) end
    end
    if not sent and note == '1' then
      redis.call('PUBLISH', ARGV[9], msg)
    elseif not sent then
      redis.call('SPUBLISH', ARGV[9], msg)
    end
  end
end
local status = 2
if handed then status = 4 elseif count == 0 then status = 1 end
local left = now
if count == 0 then left = nil end
return hold_reply(status, h, left, st)
