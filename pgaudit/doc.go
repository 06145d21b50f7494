// Package pgaudit keeps a lossless Postgres mirror and ledger of the
// leases a redisstore.Store hands out.
//
// Every lease change appends an event to its partition's Redis stream in
// the same Lua script that makes the change (the audit outbox). A Mirror
// consumes those streams through a consumer group and applies each batch
// in one Postgres transaction:
//
//   - lock_events, the append-only ledger: one row per stream entry
//     (acquired, reentered, renewed, decremented, released, forced), keyed
//     by partition and entry id so that a replay is a no-op, plus one
//     "expired" row per lease that Cleanup found dead;
//   - locks, the mirror: one row per held resource (owner, token, hold
//     count, acquired, renewed and expiry times), changed only by an event
//     later than the one it shows (by fencing token, then stream order).
//
// After the commit the mirror acknowledges the entries (XACK) and trims
// from the streams what every consumer group has acknowledged. While
// Postgres is down the entries wait in Redis and are retried; a mirror
// that dies leaves its entries pending, and another claims them
// (XAUTOCLAIM) after an idle time. Several mirrors may share the work.
//
// Cleanup moves stale rows (expired by Redis time, their Redis key gone or
// carrying another token: holders that died without releasing) to the
// ledger. Diagnose reports leases held, stale leases, Redis leases missing
// from the mirror, the mirror's lag and long-held leases, as a table or
// JSON, with thresholds for a monitoring job's exit code.
//
// Migrate creates the schema (goose migrations embedded in the binary).
// docs/operations.md tells how to deploy the mirror, with a least-privilege
// Postgres role and a Redis ACL user.
package pgaudit
