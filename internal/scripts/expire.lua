-- expire.lua: turn the holds of one partition that expired into
-- "expired" events.
--
-- KEYS[1] expiry index   <prefix>:{p}:expiry  (see lib.lua's expiry_member)
-- KEYS[2] event stream   <prefix>:{p}:events
-- ARGV[1] stream MAXLEN ~ cap (not "0": with the outbox off there is no
--         index to read)
-- ARGV[2] the most holds to take at once (integer >= 1)
-- Reply: {n, more}: n events appended, more 1 when more holds are due
--   (call again), else 0. An error reply ("ERR lockcoord: ...") changed
--   nothing: an index of another type, a stream that refused the first
--   event (see lib.lua).
--
-- A member of the index whose score (the hold's expires_at) is at or
-- before Redis TIME is a hold that ended by expiry: every script that
-- renews, re-enters or releases a hold moves or removes its member in
-- the same script, and the lease key (or, on a shared resource, the
-- holder's fields, pruned by time) ends by the same clock. So the
-- script reads the index alone, never the lease: when a hold is free is
-- decided by its key's TTL as before, and the event is appended at the
-- script's run, after the expiry. Each due member gives one event,
-- fields as the other kinds (event_fields: count 0, at the time of this
-- run, expires_at the hold's expiry, req ""), then the members taken
-- are removed, so a second run appends nothing again. A member that is
-- not of the index's form (hand-edited) is removed without an event.
-- A stream that refuses an event after the first (Redis out of memory
-- meanwhile) ends the run: the members whose events were appended are
-- removed, the others stay due.
--
-- Cost: TIME ZRANGE when nothing is due; + XADD per expired hold and one
-- ZREM.

local now = redis_time()
local now_s = fmt('%d', now)
local due = redis.pcall('ZRANGE', KEYS[1], '-inf', now_s, 'BYSCORE', 'LIMIT', '0', ARGV[2], 'WITHSCORES')
if failed(due) then return fail('corrupt expiry index ' .. KEYS[1] .. ': ' .. due.err) end
local done, n, more = {}, 0, 0
if #due / 2 >= tonumber(ARGV[2]) then more = 1 end
for i = 1, #due, 2 do
  local m = due[i]
  local token, acq, typ, id, owner, cap, meta = string.match(m, '^(%d+)\n(%d+)\n([^\n]+)\n([^\n]+)\n([^\n]+)\n(%d*)\n(.*)$')
  if token then
    local f = event_fields('expired', typ, id, owner, token, '0', now_s, acq,
      fmt('%d', tonumber(due[i + 1])), '', meta)
    if cap ~= '' then
      for _, v in ipairs({'mode', 'shared', 'cap', cap}) do f[#f + 1] = v end
    end
    local why = append_event(KEYS[2], ARGV[1], f)
    if why and n == 0 then return fail(why) end
    if why then -- the rest stay due
      more = 1
      break
    end
    n = n + 1
  end
  done[#done + 1] = m
end
if #done > 0 then redis.call('ZREM', KEYS[1], unpack(done)) end
return {n, more}
