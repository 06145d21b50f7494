// Package scripts embeds the Lua scripts that make lease changes atomic in
// Redis, one per operation:
//
//   - acquire.lua takes a free resource, joins a shared one, or re-enters
//     (or upgrades) the owner's lease, and queues a waiting acquirer that
//     is refused (Acquire);
//   - acquireall.lua takes every claim of an AcquireAll in one partition,
//     all or nothing (AcquireAll), built with acquire.lua as a function it
//     calls per claim;
//   - renew.lua sets the expiry of the owner's lease (Renew);
//   - release.lua drops one hold, every hold, or forces a lease off, and
//     tells the first queued waiter or every listener (Release);
//   - unqueue.lua takes a waiter out of a resource's waiter queue (Unqueue);
//   - expire.lua turns the holds of a partition whose expiry passed into
//     "expired" events, reading the partition's expiry index, which the
//     other scripts keep (Expire).
//
// lib.lua holds the helpers they share (finding and cutting a word of a
// space-separated list, remembering the last request ids of a lease,
// telling the first live waiter), core.lua the few that a fast path
// needs (reading Redis time, appending an event, raising an owner
// index's TTL). Each script is built as core.lua, the script's fast path
// (its text before a line "--@lib": the common case of acquire.lua,
// renew.lua and release.lua, an exclusive lease), lib.lua, then the rest of the script, so that a call
// taking the fast path never pays for defining lib.lua's helpers, which
// Redis makes anew on every call (acquireall.lua is built with
// acquire.lua as a function it calls per claim).
// Each file begins with its KEYS / ARGV / reply / cost contract. Every key
// a script touches shares the partition's hash tag, so each script runs on
// one Redis Cluster slot; every change appends its event to the
// partition's stream (the audit outbox) in the same script.
//
// The scripts take time from Redis (TIME), never from the caller, and keep
// fencing tokens integer-exact by storing them as decimal strings.
package scripts
