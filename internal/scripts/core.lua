-- core.lua: the helpers the scripts' fast paths need, written once.
-- Package scripts builds each script as this file, the script's fast
-- path (the text before its "--@lib" line), lib.lua, then the rest of
-- the script: a call that takes the fast path returns before lib.lua's
-- helpers are defined. Defining a local function costs Redis a closure,
-- and one upvalue per earlier local it names, on every call of the
-- script (about 26,000 instructions for lib.lua's forty helpers), so
-- this file stays small: only what a fast path calls. No helper reads
-- KEYS or ARGV: a script passes them its own.
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

-- an error reply. Each script reads and checks everything that can fail
-- before its first write, so an error reply means the script changed
-- nothing.
local function fail(msg)
  return redis.error_reply('ERR lockcoord: ' .. msg)
end

-- whether a pcall'd command failed (its reply is an error table)
local function failed(r)
  return type(r) == 'table' and r.err ~= nil
end

-- whether v is 1 to n decimal digits
local function digits(v, n)
  return type(v) == 'string' and #v >= 1 and #v <= n and string.find(v, '^%d+$') ~= nil
end

-- whether v is a fencing token: a decimal integer from 1 to 2^63 - 1
-- (a bigint in the pgaudit ledger), without leading zeros
local function is_token(v)
  return digits(v, 19) and string.byte(v, 1) ~= 48 and (#v < 19 or v <= '9223372036854775807')
end

-- why the fields f (HMGET owner count token acquired_at expires_at) of
-- lease key are not those of a lease the scripts wrote, or nil
local function lease_fault(key, f)
  local bad
  if type(f[1]) ~= 'string' or f[1] == '' then
    bad = 'owner'
  elseif not digits(f[2], 15) or tonumber(f[2]) < 1 then
    bad = 'count'
  elseif not is_token(f[3]) then
    bad = 'token'
  elseif not digits(f[4], 15) then
    bad = 'acquired_at'
  elseif not digits(f[5], 15) then
    bad = 'expires_at'
  else
    return nil
  end
  local v = f[({owner = 1, count = 2, token = 3, acquired_at = 4, expires_at = 5})[bad]]
  if type(v) ~= 'string' then return 'corrupt lease ' .. key .. ': field ' .. bad .. ' missing' end
  return 'corrupt lease ' .. key .. ': field ' .. bad .. ' = ' .. fmt('%q', v)
end

-- the exclusive hold {owner, count, token, acquired_at, expires_at,
-- request ids, meta} of lease key, all its HGETALL (request ids "" when
-- none); nil when all is an error or empty, or the lease is shared or
-- not well formed: a fast path then leaves the case to the general one
local function exclusive_hold(key, all)
  if failed(all) or #all == 0 then return nil end
  local f = {}
  for i = 1, #all, 2 do f[all[i]] = all[i + 1] end
  local h = {f.owner, f.count, f.token, f.acquired_at, f.expires_at, f.req or '', f.meta}
  if f.mode or lease_fault(key, h) then return nil end
  return h
end

-- the reply {status, owner, count, token, acquired_at_ms, expires_at_ms,
-- remaining_ms, meta, mode, cap, holders, queued} of an exclusive lease
-- (mode 0, cap 0, one holder, queued 0): remaining_ms is expires_at - now
-- (never below 0), or -1 when now is nil (the script did not read TIME:
-- the reply does not say)
local function reply(status, owner, count, token, acquired, expires, now, meta)
  local left = -1
  if now then left = math.max(expires - now, 0) end
  return {status, owner, count, token, acquired, expires, left, meta or '', 0, 0, 1, 0}
end

-- the event fields (a table) of a lease change: the fixed ones, and the
-- lease's metadata when it has some
local function event_fields(name, typ, id, owner, token, count, at, acquired, expires, req, meta)
  local f = {'event', name, 'type', typ, 'id', id, 'owner', owner, 'token', token, 'count', count,
    'at', at, 'acquired_at', acquired, 'expires_at', expires, 'req', req}
  if meta and meta ~= '' then
    f[#f + 1] = 'meta'
    f[#f + 1] = meta
  end
  return f
end

-- append an event (f: field value ..., see event_fields) to stream key, capped at about maxlen
-- entries (XADD MAXLEN ~), unless maxlen is "0" (the outbox is off).
-- Returns nil, or why the stream refused it (a key of another type, its
-- id space exhausted, Redis out of memory): every script appends its
-- event before its other writes, so that a refusal changes nothing.
local function append_event(key, maxlen, f)
  if maxlen == '0' then return nil end
  local r = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, '*', unpack(f))
  if failed(r) then return 'outbox ' .. key .. ': ' .. r.err end
  return nil
end

-- add member (and the empty-string placeholder) to the owner index key,
-- a set; a key of another type (hand-edited) is replaced
local function index_add(key, member)
  if failed(redis.pcall('SADD', key, member, '')) then
    redis.call('DEL', key)
    redis.call('SADD', key, member, '')
  end
end

-- remove member from the owner index key; a key of another type is
-- deleted
local function index_remove(key, member)
  if failed(redis.pcall('SREM', key, member)) then
    redis.call('DEL', key)
  end
end

-- Redis time (TIME): milliseconds, a number, and microseconds, a
-- decimal string (exact: below 2^53 until the year 2255)
local function redis_time()
  local t = redis.call('TIME')
  local us = t[1] * 1000000 + t[2]
  return math.floor(us / 1000), fmt('%d', us)
end

-- raise the TTL of an owner index to twice ms when it falls below ms (a
-- number), so that most changes leave it alone (PTTL [+ PEXPIRE])
local function raise_ttl(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, fmt('%d', 2 * ms))
  end
end

-- The expiry index <prefix>:{p}:expiry is a sorted set with one member
-- per hold, scored by the hold's expires_at (ms, Redis TIME): every
-- script that changes a hold's expiry or ends it moves or removes its
-- member in the same script, so a member whose score has passed is a
-- hold that expired (expire.lua turns it into an "expired" event). The
-- member carries what that event needs, the key being gone by then:
-- "<token>\n<acquired_at>\n<type>\n<id>\n<owner>\n<cap>\n<meta>", cap
-- "" for an exclusive hold (type, id and owner hold no control
-- character; meta, last, may). It is kept only while the outbox is on
-- (maxlen not "0"): without a stream there is no event to append.

-- the expiry index member of hold h of resource typ/id in state st
local function expiry_member(typ, id, h, st)
  local cap = ''
  if st.shared then cap = fmt('%d', st.cap) end
  return h[3] .. '\n' .. h[4] .. '\n' .. typ .. '\n' .. id .. '\n' .. h[1] .. '\n' .. cap .. '\n' .. (h[7] or '')
end

-- score member at expires (a decimal string) in the expiry index key
-- (ZADD), unless maxlen is "0"; a key of another type is replaced
local function expiry_set(key, maxlen, member, expires)
  if maxlen == '0' then return end
  if failed(redis.pcall('ZADD', key, expires, member)) then
    redis.call('DEL', key)
    redis.call('ZADD', key, expires, member)
  end
end

-- drop from the expiry index key the members of holds that expired more
-- than expiry_grace ms before now and that no sweep turned into events
-- (ZREMRANGEBYSCORE), unless maxlen is "0". A process that watches a
-- partition, or a mirror with its expiry sweep, sweeps it every 250 ms,
-- so a member a minute overdue means nobody sweeps the partition and
-- nobody waits for its event: without this the index would grow by one
-- member per expired hold for as long as nobody sweeps. The mirror's
-- cleanup still records such an expiry in the ledger. A key of another
-- type is left to expiry_set. It runs for one fresh hold in ten, those
-- whose token (a decimal string) ends in 0: beyond the last minute's,
-- the index then keeps the members of the holds that expired since the
-- last such acquisition (ten acquisitions on average), and nine
-- acquisitions in ten save the command.
local expiry_grace = 60000
local function expiry_prune(key, maxlen, now, token)
  if maxlen == '0' or string.byte(token, -1) ~= 48 then return end
  redis.pcall('ZREMRANGEBYSCORE', key, '-inf', fmt('(%d', now - expiry_grace))
end

-- remove member from the expiry index key (ZREM), unless maxlen is "0";
-- a key of another type is deleted
local function expiry_drop(key, maxlen, member)
  if maxlen == '0' then return end
  if failed(redis.pcall('ZREM', key, member)) then
    redis.call('DEL', key)
  end
end
