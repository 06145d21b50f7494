-- renew.lua: set the expiry of the owner's lease (its own hold, on a
-- shared resource) to now + ttl.
--
-- KEYS[1] lock hash      <prefix>:{p}:lock:<type>:<id>
-- KEYS[2] event stream   <prefix>:{p}:events
-- KEYS[3] owner index    <prefix>:{p}:owner:<owner>
-- KEYS[4] expiry index   <prefix>:{p}:expiry  (see lib.lua's expiry_member)
-- ARGV[1] owner
-- ARGV[2] ttl in milliseconds (integer >= 1)
-- ARGV[3] request id (no spaces)
-- ARGV[4] resource type
-- ARGV[5] resource id
-- ARGV[6] stream MAXLEN ~ cap; 0 switches the outbox off
-- ARGV[7] expected fencing token, decimal; "0" renews whatever lease the owner holds
-- Reply: {status, owner, count, token, acquired_at_ms, expires_at_ms,
--         remaining_ms, meta, mode, cap, holders, queued} (see acquire.lua)
--   status 1 renewed, 3 repeated request id (nothing applied),
--   0 held by another owner (the holder's lease: on a shared resource
--   the other holder whose hold expires first), -1 free (no lease),
--   -2 the owner holds a lease with another token (that lease).
--   token is a decimal string.
--   An error reply ("ERR lockcoord: ...") changed nothing: a corrupt
--   lease hash, a stream that refused the event (see lib.lua).
--
-- A renewal runs HGETALL TIME XADD HSET PEXPIRE PTTL ZADD (+ HDEL when
-- expired shared holds are dropped, see acquire.lua), in that order: the
-- event goes first, so that a stream that refuses it leaves the lease as
-- it was; the owner index's TTL is raised to twice the lease's when it
-- falls below it (see acquire.lua).
--
-- The helpers it calls (find, remember, read_state, ...) are those of
-- core.lua and lib.lua (see package scripts: the fast path below runs
-- before lib.lua's are defined).

local owner, req = ARGV[1], ARGV[3]

-- Fast path: the owner's exclusive lease, its token the one expected
-- (or any, ARGV[7] "0"), the request id not applied: the keep-alive's
-- case, done with core.lua's helpers alone, command for command as
-- below. Otherwise the HGETALL goes to the general path (pre_all), which
-- decides as if the fast path had not run: it wrote nothing.
local pre_all = redis.pcall('HGETALL', KEYS[1])
local fast = exclusive_hold(KEYS[1], pre_all)
if fast and fast[1] == owner and (ARGV[7] == '0' or fast[3] == ARGV[7]) and not find(fast[6], req) then
  local now = redis_time()
  local ttl = tonumber(ARGV[2])
  local expires_s = fmt('%d', now + ttl)
  local why = append_event(KEYS[2], ARGV[6],
    event_fields('renewed', ARGV[4], ARGV[5], owner, fast[3], fast[2], fmt('%d', now), fast[4], expires_s, req, fast[7]))
  if why then return fail(why) end
  redis.call('HSET', KEYS[1], 'expires_at', expires_s, 'req', remember(fast[6], req))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  raise_ttl(KEYS[3], ttl)
  expiry_set(KEYS[4], ARGV[6], expiry_member(ARGV[4], ARGV[5], fast, {}), expires_s)
  return reply(1, owner, tonumber(fast[2]), fast[3], tonumber(fast[4]), now + ttl, now, fast[7])
end
--@lib

local st, why = read_state(KEYS[1], pre_all)
if not st then return fail(why) end
local now = redis_time()
prune(st, now)
local mine = st.holders[owner]
if not mine then
  if st.n == 0 then return {-1} end
  return hold_reply(0, first_other(st, owner), now, st)
end
if ARGV[7] ~= '0' and mine[3] ~= ARGV[7] then
  return hold_reply(-2, mine, now, st)
end
if find(mine[6] or '', req) then
  return hold_reply(3, mine, now, st)
end

local ttl = tonumber(ARGV[2])
local expires_s = fmt('%d', now + ttl)
why = append_event(KEYS[2], ARGV[6], hold_event('renewed', ARGV[4], ARGV[5], mine, st, mine[2], fmt('%d', now), expires_s, req))
if why then return fail(why) end
mine[5], mine[6] = expires_s, remember(mine[6] or '', req)
if st.shared then
  write_shared(KEYS[1], st, now, {owner})
else
  redis.call('HSET', KEYS[1], 'expires_at', expires_s, 'req', mine[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
raise_ttl(KEYS[3], ttl)
expiry_set(KEYS[4], ARGV[6], expiry_member(ARGV[4], ARGV[5], mine, st), expires_s)
return hold_reply(1, mine, now, st)
