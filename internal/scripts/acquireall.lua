-- acquireall.lua: take every claim of an AcquireAll whose resources share
-- a partition (so one Cluster slot), all or nothing, in one script.
--
-- Package scripts builds it as lib.lua, then acquire.lua as the body of
-- a function acquire_one(KEYS, ARGV), then this file: each claim is
-- decided and taken exactly as acquire.lua takes one resource.
--
-- KEYS six per claim, in the order of the claims: acquire.lua's KEYS[1] to KEYS[6] of the claim
-- ARGV seventeen per claim, in the same order: acquire.lua's ARGV[1] to ARGV[17] of the claim
--      (its ARGV[17], decide only, is set by this script)
-- Reply: {0, r1, ..., rn}: every claim taken, ri acquire.lua's reply of claim i;
--   {i, ri}: claim i refused (ri a conflict, an upgrade conflict or a cap refusal),
--   nothing applied but the queuing of the claim's waiter on a conflict;
--   {-1, r1, ..., rn}: a repeated request id: the AcquireAll was applied before,
--   ri the reply (status 3) of each claim whose hold remembers it, {-1} of the others.
--   An error reply is acquire.lua's: see Order.
--
-- Order: every claim is decided first (acquire.lua with ARGV[17] "1":
-- reads only), so that a refusal changes nothing; then the claims that
-- take a token (fresh holds, upgrades) are taken, then the re-entries.
-- The first token taken checks the partition's fence counter (corrupt,
-- unmarked: the error reply of that claim, before any write); a stream
-- that refuses an event after the first accepted one (Redis out of
-- memory meanwhile) leaves the claims taken before it applied, as a
-- failure between the scripts of the ordered path would.
--
-- Cost: per claim the decision's reads (HGETALL TIME, + GET for a fresh
-- hold) and then acquire.lua's commands for it: a fresh exclusive claim
-- is 3 + 10 commands, in one round trip for the whole set, where the
-- ordered path (one acquire.lua per claim, taken in partition order,
-- plus a SET NX of the AcquireAll's nonce) sends 1 + n round trips.

local per_k, per_a = 6, 17
local n = #KEYS / per_k

-- the KEYS of claim i, and its ARGV with ARGV[17] = dry
local function claim(i, dry)
  local k, a = {}, {}
  for j = 1, per_k do k[j] = KEYS[per_k * (i - 1) + j] end
  for j = 1, per_a do a[j] = ARGV[per_a * (i - 1) + j] end
  a[per_a] = dry
  return k, a
end

local decided, again = {}, false
for i = 1, n do
  local r = acquire_one(claim(i, '1'))
  if r.err then return r end
  local st = r[1]
  if st == 0 then
    -- a conflict: decided again for real, which queues a waiting claim
    r = acquire_one(claim(i, '0'))
    return {i, r}
  elseif st == -3 or st == -4 then
    return {i, r}
  end
  if st == 3 then again = true end
  decided[i] = st
end

local out = {0}
if again then
  out[1] = -1
  for i = 1, n do
    if decided[i] == 3 then
      out[i + 1] = acquire_one(claim(i, '1'))
    else
      out[i + 1] = {-1}
    end
  end
  return out
end
for pass = 1, 2 do
  for i = 1, n do
    local takes = decided[i] == 5 or decided[i] == 7
    if takes == (pass == 1) then
      local r = acquire_one(claim(i, '0'))
      if r.err then return r end
      out[i + 1] = r
    end
  end
end
return out
