-- acquire.lua: take a free resource, join a shared one, or re-enter (or
-- upgrade) the owner's own lease.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] fence counter  <prefix>:{p}:fence
-- KEYS[3] event stream   <prefix>:{p}:events
-- KEYS[4] owner index    <prefix>:{p}:owner:<owner>  (set of "type/id")
-- KEYS[5] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (string: "<waiter>@<deadline_ms>" words, first queued first, space-separated)
-- KEYS[6] expiry index   <prefix>:{p}:expiry  (sorted set, see lib.lua's expiry_member)
-- ARGV[1] owner
-- ARGV[2] ttl in milliseconds (integer >= 1)
-- ARGV[3] request id (no spaces)
-- ARGV[4] resource type
-- ARGV[5] resource id
-- ARGV[6] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[7] waiter: the waiting coordinator's id (no spaces), or "" for an acquisition that does not wait
-- ARGV[8] "1": the waiter stays queued after a success (more of its waiters wait), else "0"
-- ARGV[9] how long a waiter keeps its place after its last attempt, milliseconds
-- ARGV[10] metadata kept with the lease (field meta); "" keeps what the lease has
-- ARGV[11] mode: "shared", or "" for exclusive
-- ARGV[12] cap a shared request asks for, decimal; "0" none (joins under the recorded cap)
-- ARGV[13] the store's partition count: the marker of the fence counter
-- ARGV[14] "1": mark a fence counter that has no marker (the store has
--          checked the recorded count), else "0": refuse it
-- ARGV[15] notification mode: 0 none, 1 PUBLISH, 2 SPUBLISH (Cluster), see release.lua
-- ARGV[16] notification channel <prefix>:{p}:released (see release.lua)
-- ARGV[17] "1": decide only (acquireall.lua's first pass): a refusal as below, changing
--          nothing (a conflict does not queue), or {5} it would upgrade, {6} re-enter,
--          {7} take a fresh hold; else "0"
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms,
--         remaining_ms, meta, mode, cap, holders, queued}
--   status 1 acquired, 2 re-entered (or upgraded: shared to exclusive,
--   a new token), 3 repeated request id (nothing applied, the lease as
--   it stands), 0 conflict (the blocking holder's lease: on a shared
--   resource the other holder whose hold expires first), -4 upgrade
--   conflict (the sole-holder rule: another owner holds the resource
--   shared; nothing queued), -3 a cap other than the recorded one (cap:
--   the recorded one; nothing applied, nothing queued).
--   token is a decimal string: Lua numbers are doubles (integer replies
--   of count and times, below 2^53, keep every digit). remaining_ms is
--   the time the lease has left by Redis TIME; mode 0 exclusive, 1
--   shared; cap 0 none; holders the owners holding the resource; queued
--   the waiters queued ahead (0: none or not known). See lib.lua's reply.
--   An error reply ("ERR lockcoord: ...") changed nothing: a corrupt
--   lease hash, a fence counter out of range, a fence counter marked
--   with another partition count ("partitions ..."), or without a marker
--   and ARGV[14] "0" ("unmarked ..."), a stream that refused the event
--   (see lib.lua's next_token).
--
-- Modes: an exclusive request conflicts with any other owner's hold, a
-- shared one with another owner's exclusive hold or a full cap. The
-- owner's own hold is re-entered in any mode (an exclusive one stays
-- exclusive); the sole shared holder asking exclusive is upgraded. The
-- hash of a shared resource keeps one set of fields per holder (see
-- lib.lua's read_state), each holder's expiry its own; the key's TTL is
-- the latest, and every script that reads the hash drops the holds that
-- expired (Redis TIME) with its next write of the hash.
--
-- Order: read and check everything (the lease, the fence), append the
-- event, then write the lease and the indexes, which cannot fail once
-- the reads succeeded (the fence, written by SET ... GET before the
-- event, is put back when the event is refused).
--
-- Fairness: a fresh hold of a resource with waiters queued goes to the
-- first of them alone (the others, and acquisitions that do not wait,
-- get a conflict saying how many are queued ahead, with no holder named
-- when the resource is free); the first keeps its place until it
-- acquires or its place lapses (ARGV[9] after its last attempt). A
-- shared hold taken while room is left tells the next waiter.
--
-- Cost: every redis.call is a command for Redis to look up, run and
-- convert back to Lua, so the script issues as few as it can: a conflict
-- is HGETALL TIME (+ GET SET for a waiter), a fresh acquisition in
-- either mode HGETALL TIME GET SET XADD HSET PEXPIRE SADD PTTL ZADD (the GET
-- reads the waiter queue, for fairness; + SET|DEL for a waiter, + HDEL
-- when expired shared holds are dropped), a re-entry HGETALL TIME XADD
-- HSET PEXPIRE PTTL ZADD (+ ZREM when its metadata changes), an upgrade
-- HGETALL TIME SET XADD DEL HSET PEXPIRE PTTL ZREM ZADD. The ZADD keeps
-- the hold's expiry in the expiry index (lib.lua's expiry_member), for
-- expire.lua; with the outbox off there is none. The waiter queue is a plain string, so the scripts need no
-- command beyond those of the worker's ACL in docs/operations.md. The
-- owner index keeps an empty-string member, so that it is not
-- deleted and created again with each lease of an owner that holds one at
-- a time; its TTL is raised to twice the lease's when it falls below the
-- lease's, so that most acquisitions leave it alone.
-- Numbers go to redis.call as strings formatted once with %d: Redis
-- formats a Lua number argument with printf("%.17g"), which costs more
-- than the command it feeds, and Lua's tostring loses digits.
--
-- The helpers it calls (find, remember, read_state, ...) are those of
-- core.lua and lib.lua (see package scripts: the fast path below runs
-- before lib.lua's are defined).

-- the hash fields of exclusive hold h
local function exclusive_fields(h)
  local f = {'owner', h[1], 'count', h[2], 'token', h[3], 'acquired_at', h[4], 'expires_at', h[5], 'req', h[6]}
  if h[7] and h[7] ~= '' then
    f[#f + 1] = 'meta'
    f[#f + 1] = h[7]
  end
  return f
end

-- Fast path: an exclusive acquisition (not a decision of acquireall.lua)
-- of a free resource that no waiter queues for, by a caller that does
-- not stay queued, with a fence counter this store marked and behind
-- Redis TIME: the common case, done with core.lua's helpers alone. It
-- is fresh() below for that case, command for command: HGETALL GET TIME
-- SET XADD HSET PEXPIRE SADD PTTL ZADD. When the case does not apply,
-- what it read goes to the general path (pre_all, pre_queue), which
-- decides as if the fast path had not run: nothing was written but a
-- fence counter not behind TIME (or not this store's), put back first.
-- Beyond its commands, what a script costs Redis is what its Lua makes:
-- each table, string and closure is an allocation the Lua collector
-- later frees (callgrind, Redis 7.0: a string.format about 2,200
-- instructions, a table of 12 about 2,100, defining lib.lua's helpers
-- about 26,000 on every call, core.lua's 17,000), so the fast path makes
-- few and skips lib.lua: an exclusive pair went from 538,000 to 410,000
-- instructions of Redis (the floor's pair: 55,000).
local pre_all, pre_queue
if ARGV[11] == '' and ARGV[17] == '0' then
  pre_all = redis.pcall('HGETALL', KEYS[1])
  if not failed(pre_all) and #pre_all == 0 then
    pre_queue = redis.pcall('GET', KEYS[5])
  end
end
if pre_queue == false and (ARGV[7] == '' or ARGV[8] == '0') then
  local now, now_us = redis_time()
  local old = redis.pcall('SET', KEYS[2], now_us .. '/' .. ARGV[13], 'KEEPTTL', 'GET')
  local last
  if type(old) == 'string' then last = string.match(old, '^([1-9]%d*)/(%d+)$') end
  if last and string.sub(old, #last + 2) == ARGV[13] and (#last < #now_us or (#last == #now_us and last < now_us)) then
    local ttl, now_s = tonumber(ARGV[2]), fmt('%d', now)
    local h = {ARGV[1], '1', now_us, now_s, fmt('%d', now + ttl), ARGV[3], ARGV[10]}
    local maxlen = ARGV[6]
    local why = append_event(KEYS[3], maxlen, event_fields('acquired', ARGV[4], ARGV[5], h[1], h[3], '1', now_s, now_s, h[5], h[6], h[7]))
    if why then
      redis.call('SET', KEYS[2], old, 'KEEPTTL')
      return fail(why)
    end
    redis.call('HSET', KEYS[1], unpack(exclusive_fields(h)))
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    index_add(KEYS[4], ARGV[4] .. '/' .. ARGV[5])
    raise_ttl(KEYS[4], ttl)
    expiry_prune(KEYS[6], maxlen, now, now_us)
    expiry_set(KEYS[6], maxlen, expiry_member(ARGV[4], ARGV[5], h, {}), h[5])
    return reply(1, h[1], 1, now_us, now, now + ttl, now, h[7])
  end
  if old and not failed(old) then
    redis.call('SET', KEYS[2], old, 'KEEPTTL')
  elseif not failed(old) then
    redis.call('DEL', KEYS[2])
  end
end
--@lib

local owner, req, waiter, meta = ARGV[1], ARGV[3], ARGV[7], ARGV[10]
local shared, permits = ARGV[11] == 'shared', tonumber(ARGV[12])
local st, why = read_state(KEYS[1], pre_all)
if not st then return fail(why) end
local now, now_us = redis_time()
local now_s = fmt('%d', now)
prune(st, now)
local mine = st.holders[owner]
local ttl = tonumber(ARGV[2])
local maxlen = ARGV[6]
local dry = ARGV[17] == '1'

-- the waiter queue as a list (see lib.lua), read once needed; life is
-- the time a registration keeps a waiter's place
local ql, qchanged
local life = tonumber(ARGV[9])
local function queue()
  if not ql then ql = queue_list(read_queue(KEYS[5], pre_queue), now) end
  return ql
end

-- how many waiters are queued ahead of this acquisition: all of them,
-- unless its waiter is queued
local function ahead()
  local l = queue()
  local p = queue_pos(l, waiter)
  if p then return p - 1 end
  return #l
end

-- queue the waiter at the end, unless queued (it keeps its place); its
-- place lasts life ms from now
local function enqueue()
  local l = queue()
  local p = queue_pos(l, waiter)
  local e = {waiter, fmt('%d', now + life)}
  if p then l[p] = e else l[#l + 1] = e end
  qchanged = true
end

-- a waiter that got the lease leaves the queue, or goes to its end when
-- more of its coordinator's waiters wait
local function dequeue()
  if waiter == '' then return end
  local l = queue()
  local p = queue_pos(l, waiter)
  if p then
    table.remove(l, p)
    qchanged = true
  end
  if ARGV[8] == '1' then enqueue() end
end

-- write the queue if it changed
local function save_queue()
  if qchanged then store_list(KEYS[5], ql, life) end
end

-- a refusal: conflict (with n waiters queued ahead, when known), or an
-- upgrade conflict, which does not queue
local function conflict(upgrade, n)
  if upgrade then return hold_reply(-4, first_other(st, owner), now, st) end
  if waiter ~= '' and not dry then
    -- the release that ends a hold notifies the first waiter alone
    n = n or ahead()
    enqueue()
    save_queue()
  end
  local h = first_other(st, owner) or {'', '0', '0', '0', '0'}
  return hold_reply(0, h, now, st, n)
end

-- the owner's own hold again: count + 1, expiry not shortened
local function reenter()
  local count_s = fmt('%d', tonumber(mine[2]) + 1)
  local expires = math.max(tonumber(mine[5]), now + ttl)
  local expires_s = fmt('%d', expires)
  local old = expiry_member(ARGV[4], ARGV[5], mine, st)
  if meta ~= '' then mine[7] = meta end
  why = append_event(KEYS[3], maxlen, hold_event('reentered', ARGV[4], ARGV[5], mine, st, count_s, now_s, expires_s, req))
  if why then return fail(why) end
  mine[2], mine[5], mine[6] = count_s, expires_s, remember(mine[6] or '', req)
  if st.shared then
    write_shared(KEYS[1], st, now, {owner})
  elseif meta ~= '' then
    redis.call('HSET', KEYS[1], 'count', count_s, 'expires_at', expires_s, 'req', mine[6], 'meta', meta)
    redis.call('PEXPIRE', KEYS[1], fmt('%d', expires - now))
  else
    redis.call('HSET', KEYS[1], 'count', count_s, 'expires_at', expires_s, 'req', mine[6])
    redis.call('PEXPIRE', KEYS[1], fmt('%d', expires - now))
  end
  raise_ttl(KEYS[4], expires - now)
  local member = expiry_member(ARGV[4], ARGV[5], mine, st)
  if member ~= old then expiry_drop(KEYS[6], maxlen, old) end
  expiry_set(KEYS[6], maxlen, member, expires_s)
  if waiter ~= '' then
    dequeue()
    save_queue()
  end
  return hold_reply(2, mine, now, st)
end

-- the sole shared holder becomes the exclusive holder: count + 1, a new
-- token, acquired_at kept, the hash rewritten in the exclusive layout
local function upgrade()
  local token, undo
  token, undo, why = next_token(KEYS[2], now_us, ARGV[13], ARGV[14])
  if not token then return fail(why) end
  local expires = math.max(tonumber(mine[5]), now + ttl)
  local h = {owner, fmt('%d', tonumber(mine[2]) + 1), token, mine[4], fmt('%d', expires),
    remember(mine[6] or '', req), mine[7]}
  if meta ~= '' then h[7] = meta end
  local ex = {shared = false, cap = 0, n = 1, holders = {[owner] = h}, gone = {}}
  local f = hold_event('reentered', ARGV[4], ARGV[5], h, ex, h[2], now_s, h[5], req)
  f[#f + 1], f[#f + 2] = 'upgraded', '1'
  why = append_event(KEYS[3], maxlen, f)
  if why then
    undo()
    return fail(why)
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(exclusive_fields(h)))
  redis.call('PEXPIRE', KEYS[1], fmt('%d', expires - now))
  raise_ttl(KEYS[4], expires - now)
  expiry_drop(KEYS[6], maxlen, expiry_member(ARGV[4], ARGV[5], mine, st))
  expiry_set(KEYS[6], maxlen, expiry_member(ARGV[4], ARGV[5], h, ex), h[5])
  if waiter ~= '' then
    dequeue()
    save_queue()
  end
  return hold_reply(2, h, now, ex)
end

-- a fresh hold: token = max(last + 1, now_us) (next_token); the first
-- holder of a free resource records its mode and cap
local function fresh()
  local token, undo
  token, undo, why = next_token(KEYS[2], now_us, ARGV[13], ARGV[14])
  if not token then return fail(why) end
  local h = {owner, '1', token, now_s, fmt('%d', now + ttl), req, meta}
  local new = st.n == 0
  if new then st.shared, st.cap = shared, permits end
  st.holders[owner], st.n = h, st.n + 1
  why = append_event(KEYS[3], maxlen, hold_event('acquired', ARGV[4], ARGV[5], h, st, '1', now_s, h[5], req))
  if why then
    undo()
    return fail(why)
  end
  if st.shared then
    write_shared(KEYS[1], st, now, {owner}, new)
  else
    if #st.gone > 0 then redis.call('DEL', KEYS[1]) end -- a shared hash whose holds all expired
    redis.call('HSET', KEYS[1], unpack(exclusive_fields(h)))
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  index_add(KEYS[4], ARGV[4] .. '/' .. ARGV[5])
  raise_ttl(KEYS[4], ttl)
  expiry_prune(KEYS[6], maxlen, now, token)
  expiry_set(KEYS[6], maxlen, expiry_member(ARGV[4], ARGV[5], h, st), h[5])
  dequeue()
  if #queue() > 0 and st.shared and (st.cap == 0 or st.n < st.cap) and ARGV[15] ~= '0' then
    -- room for the next waiter too: tell it
    local _, changed = notify_first(ql, ARGV[15], ARGV[16], ARGV[4] .. '/' .. ARGV[5])
    qchanged = qchanged or changed
  end
  save_queue()
  return hold_reply(1, h, now, st)
end

if mine then
  if find(mine[6] or '', req) then return hold_reply(3, mine, now, st) end
  if shared and st.shared and permits ~= 0 and permits ~= st.cap then
    return hold_reply(-3, mine, now, st)
  end
  if not shared and st.shared then
    if st.n > 1 then return conflict(true) end
    if dry then return {5} end
    return upgrade()
  end
  if dry then return {6} end
  return reenter()
end
if st.n > 0 then
  if not st.shared or not shared then return conflict(false) end
  if permits ~= 0 and permits ~= st.cap then return hold_reply(-3, first_other(st, owner), now, st) end
  if st.cap > 0 and st.n >= st.cap then return conflict(false) end
end
-- fair: a fresh hold of a resource with waiters queued goes to the first
local n = ahead()
if n > 0 then return conflict(false, n) end
if dry then return {7} end
return fresh()
