-- lib.lua: the helpers the scripts share, written once, beside the few
-- of core.lua. Package scripts builds each script as core.lua, the
-- script's fast path (if it has one), this file, then the rest of the
-- script, so the helpers are locals of every script. No helper reads
-- KEYS or ARGV: a script passes them its own, and its header alone
-- documents them.
--
-- Cost: a helper issues only the redis.call commands it names; calling a
-- Lua function costs no Redis command.

-- l without its word at s..e
local function cut(l, s, e)
  if s == 1 then return string.sub(l, e + 2) end
  return string.sub(l, 1, s - 2) .. string.sub(l, e + 1)
end

-- the lease in lock hash key: {owner, count, token, acquired_at,
-- expires_at, request ids, meta}, owner false when the resource is free
-- (HMGET); or nil and why the key is corrupt (not a hash, or a field that
-- no script wrote: see lease_fault)
local function read_lease(key)
  local h = redis.pcall('HMGET', key, 'owner', 'count', 'token', 'acquired_at', 'expires_at', 'req', 'meta')
  if failed(h) then return nil, 'corrupt lease ' .. key .. ': ' .. h.err end
  if not (h[1] or h[2] or h[3] or h[4] or h[5]) then return h end
  local why = lease_fault(key, h)
  if why then return nil, why end
  return h
end

-- the reply (see reply) of lease h (read_lease) as it stands at now
local function lease_reply(status, h, now)
  return reply(status, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5]), now, h[7])
end

-- A shared lease hash holds field mode = "shared", field cap (0: none)
-- and, per holder o, the fields <f>:<o> for each f of HOLD (meta:<o>
-- only when the holder has metadata). An exclusive lease hash holds the
-- fields of HOLD plus owner, as it always did.
local HOLD = {'count', 'token', 'acquired_at', 'expires_at', 'req', 'meta'}

-- the fields of holder o in a shared lease hash
local function hold_fields(o)
  local f = {}
  for i, name in ipairs(HOLD) do f[i] = name .. ':' .. o end
  return f
end

-- the state of lease hash key (HGETALL): {shared, cap, n, holders, gone},
-- holders mapping each owner to its hold {owner, count, token,
-- acquired_at, expires_at, request ids, meta} (as read_lease's), n their
-- number (0: the resource is free); or nil and why the key is corrupt
-- (not a hash, or a field that no script wrote: see lease_fault)
-- all, when given, is the key's HGETALL as a fast path read it (the
-- script has not written the key since)
local function read_state(key, all)
  all = all or redis.pcall('HGETALL', key)
  if failed(all) then return nil, 'corrupt lease ' .. key .. ': ' .. all.err end
  local f = {}
  for i = 1, #all, 2 do f[all[i]] = all[i + 1] end
  local st = {shared = false, cap = 0, n = 0, holders = {}, gone = {}}
  if f.mode == nil then
    if not (f.owner or f.count or f.token or f.acquired_at or f.expires_at) then return st end
    local h = {f.owner, f.count, f.token, f.acquired_at, f.expires_at, f.req, f.meta}
    local why = lease_fault(key, h)
    if why then return nil, why end
    st.holders[h[1]], st.n = h, 1
    return st
  end
  if f.mode ~= 'shared' then return nil, 'corrupt lease ' .. key .. ': field mode = ' .. fmt('%q', f.mode) end
  if not digits(f.cap, 15) then return nil, 'corrupt lease ' .. key .. ': field cap = ' .. fmt('%q', tostring(f.cap)) end
  st.shared, st.cap = true, tonumber(f.cap)
  for k, v in pairs(f) do
    local o = string.match(k, '^count:(.+)$')
    if o then
      local h = {o, v, f['token:' .. o], f['acquired_at:' .. o], f['expires_at:' .. o], f['req:' .. o], f['meta:' .. o]}
      local why = lease_fault(key, h)
      if why then return nil, why .. ' (holder ' .. fmt('%q', o) .. ')' end
      st.holders[o], st.n = h, st.n + 1
    end
  end
  if st.n == 0 then return nil, 'corrupt lease ' .. key .. ': shared, without holders' end
  return st
end

-- drop the holds of shared state st that expired by now (ms), listing
-- their owners in st.gone (their fields are deleted with the next write:
-- see write_shared)
local function prune(st, now)
  if not st.shared then return end
  for o, h in pairs(st.holders) do
    if tonumber(h[5]) <= now then
      st.holders[o], st.n = nil, st.n - 1
      st.gone[#st.gone + 1] = o
    end
  end
end

-- the holds of st sorted by expiry, then owner
local function sorted(st)
  local l = {}
  for _, h in pairs(st.holders) do l[#l + 1] = h end
  table.sort(l, function(a, b)
    local x, y = tonumber(a[5]), tonumber(b[5])
    if x ~= y then return x < y end
    return a[1] < b[1]
  end)
  return l
end

-- the hold of st that expires first, owner other than o, or nil
local function first_other(st, o)
  for _, h in ipairs(sorted(st)) do
    if h[1] ~= o then return h end
  end
end

-- the latest expiry of st's holds (ms), or nil when none
local function last_expiry(st)
  local m
  for _, h in pairs(st.holders) do
    local e = tonumber(h[5])
    if not m or e > m then m = e end
  end
  return m
end

-- the reply (see reply) of hold h of state st at now, queued waiters
-- ahead
local function hold_reply(status, h, now, st, queued)
  local r = reply(status, h[1], tonumber(h[2]), h[3], tonumber(h[4]), tonumber(h[5]), now, h[7])
  if st.shared then r[9], r[10] = 1, st.cap end
  r[11], r[12] = st.n, queued or 0
  return r
end

-- write shared state st to key: the holds of the owners in set (a list)
-- with all their fields, mode and cap when new, delete the fields of the
-- holders in st.gone and of drop (an owner or nil), then set the key's
-- TTL to its latest expiry (or delete it when no holder is left). HSET
-- [HDEL] PEXPIRE, or DEL. An owner both in st.gone and in set (its hold
-- expired, and it takes the resource again) keeps the fields written for
-- its new hold: only a metadata field the new hold lacks is deleted.
local function write_shared(key, st, now, set, new, drop)
  local del, setting = {}, {}
  for _, o in ipairs(set) do setting[o] = true end
  local function gone(o)
    if not setting[o] then
      for _, f in ipairs(hold_fields(o)) do del[#del + 1] = f end
    elseif not (st.holders[o][7] and st.holders[o][7] ~= '') then
      del[#del + 1] = 'meta:' .. o
    end
  end
  for _, o in ipairs(st.gone) do gone(o) end
  if drop then gone(drop) end
  if st.n == 0 then
    redis.call('DEL', key)
    return
  end
  local args = {}
  if new then args = {'mode', 'shared', 'cap', fmt('%d', st.cap)} end
  for _, o in ipairs(set) do
    local h, names = st.holders[o], hold_fields(o)
    for i = 2, 6 do
      args[#args + 1] = names[i - 1]
      args[#args + 1] = h[i] or ''
    end
    if h[7] and h[7] ~= '' then
      args[#args + 1] = names[6]
      args[#args + 1] = h[7]
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
  redis.call('PEXPIRE', key, fmt('%d', math.max(last_expiry(st) - now, 1)))
end

-- the event fields (see event_fields) of a change to hold h of state st,
-- count and expires_at as given, with mode and cap on a shared lease
local function hold_event(name, typ, id, h, st, count, at, expires, req)
  local f = event_fields(name, typ, id, h[1], h[3], count, at, h[4], expires, req, h[7])
  if st.shared then
    for _, v in ipairs({'mode', 'shared', 'cap', fmt('%d', st.cap)}) do f[#f + 1] = v end
  end
  return f
end

-- the decimal string n + 1, n being decimal digits
local function incr(n)
  local i = #n
  while i > 0 and string.byte(n, i) == 57 do i = i - 1 end -- trailing 9s
  if i == 0 then return '1' .. string.rep('0', #n) end
  return string.sub(n, 1, i - 1) .. string.char(string.byte(n, i) + 1) .. string.rep('0', #n - i)
end

-- whether decimal integer a < b, both without leading zeros
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- take the next fencing token from the fence counter key: max(last + 1,
-- now_us), computed exactly on decimal strings (now_us is Redis TIME in
-- microseconds as a decimal string). The counter holds
-- "<last>/<partition count>": the marker of the count of the store that
-- wrote it. SET ... GET writes now_us with parts (the caller's partition
-- count) and reads the old value in one command; a second SET fixes a
-- clock behind last. Returns the token and a function that puts the
-- counter back as it was (for a later failure before the token is handed
-- out), or nil and why, the counter left as it was:
--   - "partitions ...": the counter is marked with another count: two
--     counts would map one resource to two keys;
--   - "unmarked ...": the counter has no marker (the partition lost its
--     data, was never used, or was written before markers) and mark is
--     not "1": the caller checks the recorded count, then calls again
--     with mark "1";
--   - "corrupt fence ...": not a string, or last not a decimal integer
--     from 0 to 2^63 - 2 (the token must fit a bigint);
--   - the SET refused (Redis out of memory).
local function next_token(key, now_us, parts, mark)
  local old = redis.pcall('SET', key, now_us .. '/' .. parts, 'KEEPTTL', 'GET')
  if failed(old) then
    if string.find(old.err, '^WRONGTYPE') then return nil, nil, 'corrupt fence ' .. key .. ': ' .. old.err end
    return nil, nil, 'fence ' .. key .. ': ' .. old.err -- out of memory
  end
  local function undo()
    if old then
      redis.call('SET', key, old, 'KEEPTTL')
    else
      redis.call('DEL', key)
    end
  end
  local last, marker = '0', nil
  if old then
    last = old
    local s = string.find(old, '/', 1, true)
    if s then last, marker = string.sub(old, 1, s - 1), string.sub(old, s + 1) end
    last = string.gsub(last, '^0+(%d)', '%1')
  end
  if marker and not digits(marker, 5) then
    undo()
    return nil, nil, 'corrupt fence ' .. key .. ' holds ' .. fmt('%q', old) .. ': its marker is not a partition count'
  end
  if marker and marker ~= parts then
    undo()
    return nil, nil, 'partitions ' .. key .. ' is marked ' .. fmt('%q', marker) ..
      ' (the partition count of the store that wrote it), this store has ' .. parts .. ' partitions'
  end
  if not marker and mark ~= '1' then
    undo()
    return nil, nil, 'unmarked ' .. key .. ': the partition count must be checked'
  end
  if not digits(last, 19) or (#last == 19 and last > '9223372036854775806') then
    undo()
    return nil, nil, 'corrupt fence ' .. key .. ' holds ' .. fmt('%q', old) ..
      ': outside the exact range (a decimal integer from 0 to 9223372036854775806)'
  end
  local nxt = incr(last)
  if less(now_us, nxt) then
    redis.call('SET', key, nxt .. '/' .. parts, 'KEEPTTL')
    return nxt, undo
  end
  return now_us, undo
end

-- the waiter queue in key, or nil when there is none; a key of another
-- type (hand-edited) reads as none, and the next write of the queue
-- replaces it. pre, when not nil, is the key's GET as a fast path read
-- it (the script has not written the key since).
local function read_queue(key, pre)
  local q = pre
  if q == nil then q = redis.pcall('GET', key) end
  if failed(q) or not q then return nil end
  return q
end

-- A waiter queue is a string of words "<waiter>@<deadline_ms>", first
-- queued first, space-separated: each waiter keeps its place until its
-- deadline (Redis time), which each of its attempts moves on.

-- the waiter queue q (read_queue's, or nil) at now (ms) as a list of
-- {waiter, deadline}, without the waiters whose deadline passed (and
-- words of another form)
local function queue_list(q, now)
  local l = {}
  if not q then return l end
  for w in string.gmatch(q, '%S+') do
    local id, dl = string.match(w, '^(.+)@(%d+)$')
    if id and tonumber(dl) > now then l[#l + 1] = {id, dl} end
  end
  return l
end

-- the place of waiter in queue list l, or nil
local function queue_pos(l, waiter)
  if waiter == '' then return nil end
  for i, e in ipairs(l) do
    if e[1] == waiter then return i end
  end
  return nil
end

-- write queue list l to key: SET with PX life (a number of ms: an
-- acquisition, which gives its waiter that long), or keeping the key's
-- TTL when life is nil (a removal); DEL when l is empty
local function store_list(key, l, life)
  if #l == 0 then
    redis.call('DEL', key)
    return
  end
  local w = {}
  for i, e in ipairs(l) do w[i] = e[1] .. '@' .. e[2] end
  if life then
    redis.call('SET', key, table.concat(w, ' '), 'PX', fmt('%d', life))
  else
    redis.call('SET', key, table.concat(w, ' '), 'KEEPTTL')
  end
end

-- tell the first waiter of queue list l that the resource may be its,
-- sending msg on its channel <channel>:<waiter>; it keeps its place
-- until it acquires. note is the notification mode ("1" PUBLISH, "2"
-- SPUBLISH). A waiter nobody listens for (its process died, or its
-- subscription is down) is taken out and the next one is told. PUBLISH
-- counts every subscriber; SPUBLISH those of the node it runs on, the
-- slot's master, where a Cluster client subscribes unless it reads from
-- replicas: a waiter subscribed on a replica is taken out too, and hears
-- of the release on the partition channel, where a release that told
-- nobody publishes it. Returns whether a waiter was told, and whether l
-- changed.
local function notify_first(l, note, channel, msg)
  local changed = false
  local cmd = 'PUBLISH'
  if note ~= '1' then cmd = 'SPUBLISH' end
  while #l > 0 do
    if redis.call(cmd, channel .. ':' .. l[1][1], msg) > 0 then return true, changed end
    table.remove(l, 1)
    changed = true
  end
  return false, changed
end
