-- acquire.lua: take a free resource, or re-enter the owner's own lease.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] fence counter  <prefix>:{p}:fence
-- KEYS[3] event stream   <prefix>:{p}:events
-- KEYS[4] owner index    <prefix>:{p}:owner:<owner>  (set of "type/id")
-- KEYS[5] waiter queue   <prefix>:{p}:waiters:<type>:<id>  (string: waiter ids, first queued first, space-separated)
-- ARGV[1] owner
-- ARGV[2] ttl in milliseconds (integer >= 1)
-- ARGV[3] request id (no spaces)
-- ARGV[4] resource type
-- ARGV[5] resource id
-- ARGV[6] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[7] waiter: the waiting coordinator's id (no spaces), or "" for an acquisition that does not wait
-- ARGV[8] "1": the waiter stays queued after a success (more of its waiters wait), else "0"
-- ARGV[9] lifetime of the waiter queue after its last registration, milliseconds
-- ARGV[10] metadata kept with the lease (field meta); "" keeps what the lease has
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms,
--         remaining_ms, meta, mode, cap, holders, queued}
--   status 1 acquired, 2 re-entered, 3 repeated request id (nothing
--   applied, the lease as it stands), 0 conflict (the holder's lease).
--   token is a decimal string: Lua numbers are doubles (integer replies
--   of count and times, below 2^53, keep every digit). remaining_ms is
--   the time the lease has left by Redis TIME; mode 0 exclusive, 1
--   shared; cap 0 none; holders the owners holding the resource; queued
--   the waiters queued ahead (0: none or not known). See lib.lua's reply.
--   An error reply ("ERR lockcoord: ...") changed nothing: a corrupt
--   lease hash, a fence counter out of range, a stream that refused the
--   event (see lib.lua).
--
-- Order: read and check everything (the lease, the fence), append the
-- event, then write the lease and the indexes, which cannot fail once
-- the reads succeeded (the fence, written by SET ... GET before the
-- event, is put back when the event is refused).
--
-- Cost: every redis.call is a command for Redis to look up, run and
-- convert back to Lua, so the script issues as few as it can: a conflict
-- is HMGET TIME (+ GET SET for a waiter), a fresh acquisition HMGET TIME
-- SET XADD HSET PEXPIRE SADD PTTL (+ GET [SET|DEL] for a waiter). The
-- waiter queue is a plain string, so the scripts need no command beyond
-- those of the worker's ACL in docs/operations.md. The owner index keeps an empty-string member, so that it is not
-- deleted and created again with each lease of an owner that holds one at
-- a time; its TTL is raised to twice the lease's when it falls below the
-- lease's, so that most acquisitions leave it alone.
-- Numbers go to redis.call as strings formatted once with %d: Redis
-- formats a Lua number argument with printf("%.17g"), which costs more
-- than the command it feeds, and Lua's tostring loses digits.
--
-- The helpers it calls (find, cut, remember, read_lease, ...) are those
-- of lib.lua, which package scripts prepends when it builds the script.

local owner, req, waiter, meta = ARGV[1], ARGV[3], ARGV[7], ARGV[10]
local h, why = read_lease(KEYS[1])
if not h then return fail(why) end
local held = h[1]

-- queue the waiter at the end, unless queued (it keeps its place); the
-- queue lives ARGV[9] ms after this
local function enqueue(q)
  if not q then
    redis.call('SET', KEYS[5], waiter, 'PX', ARGV[9])
  elseif find(q, waiter) then
    redis.call('PEXPIRE', KEYS[5], ARGV[9])
  else
    redis.call('SET', KEYS[5], q .. ' ' .. waiter, 'PX', ARGV[9])
  end
end

if held and held ~= owner then
  if waiter ~= '' then
    -- the release that deletes the lease notifies the first waiter alone
    enqueue(read_queue(KEYS[5]))
  end
  return lease_reply(0, h, (redis_time()))
end

local ttl = tonumber(ARGV[2])
local maxlen = ARGV[6]

-- a waiter that got the lease leaves the queue, or goes to its end when
-- more of its coordinator's waiters wait
local function dequeue()
  if waiter == '' then return end
  local q = read_queue(KEYS[5])
  if ARGV[8] == '1' then
    enqueue(q)
    return
  end
  local s, e = nil, nil
  if q then s, e = find(q, waiter) end
  if not s then return end
  store_queue(KEYS[5], cut(q, s, e))
end

if held then
  -- the owner's own lease: a repeated request id, or a re-entry
  local list = h[6] or ''
  local now = redis_time()
  if find(list, req) then
    return lease_reply(3, h, now)
  end
  local count = tonumber(h[2]) + 1
  local count_s = fmt('%d', count)
  local expires = math.max(tonumber(h[5]), now + ttl)
  local expires_s, left = fmt('%d', expires), expires - now
  local m = h[7]
  if meta ~= '' then m = meta end
  why = append_event(KEYS[3], maxlen, event_fields('reentered', ARGV[4], ARGV[5], owner,
    h[3], count_s, fmt('%d', now), h[4], expires_s, req, m))
  if why then return fail(why) end
  if meta ~= '' then
    redis.call('HSET', KEYS[1], 'count', count_s, 'expires_at', expires_s, 'req', remember(list, req), 'meta', meta)
  else
    redis.call('HSET', KEYS[1], 'count', count_s, 'expires_at', expires_s, 'req', remember(list, req))
  end
  redis.call('PEXPIRE', KEYS[1], fmt('%d', left))
  raise_ttl(KEYS[4], left)
  dequeue()
  return reply(2, owner, count, h[3], tonumber(h[4]), expires, now, m)
end

-- a free resource: token = max(last + 1, now_us) (next_token)
local now, now_us = redis_time()
local token, undo
token, undo, why = next_token(KEYS[2], now_us)
if not token then return fail(why) end
local now_s, expires_s = fmt('%d', now), fmt('%d', now + ttl)
why = append_event(KEYS[3], maxlen, event_fields('acquired', ARGV[4], ARGV[5], owner,
  token, '1', now_s, now_s, expires_s, req, meta))
if why then
  undo()
  return fail(why)
end
if meta ~= '' then
  redis.call('HSET', KEYS[1], 'owner', owner, 'count', '1', 'token', token,
    'acquired_at', now_s, 'expires_at', expires_s, 'req', req, 'meta', meta)
else
  redis.call('HSET', KEYS[1], 'owner', owner, 'count', '1', 'token', token,
    'acquired_at', now_s, 'expires_at', expires_s, 'req', req)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
index_add(KEYS[4], ARGV[4] .. '/' .. ARGV[5])
raise_ttl(KEYS[4], ttl)
dequeue()
return reply(1, owner, 1, token, now, now + ttl, now, meta)
