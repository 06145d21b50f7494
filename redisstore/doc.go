// Package redisstore is the coordinator.Store on Redis 6.2 and later,
// through go-redis v9's UniversalClient: a standalone server, Sentinel or
// Cluster.
//
// Every change runs as one embedded Lua script (internal/scripts), so it
// is atomic; time comes from Redis TIME; each change appends its event to
// the partition's stream (the audit outbox that package pgaudit mirrors
// into Postgres) in the same script. Resources are spread over partitions by
// crc32; every key of a script carries the partition's hash tag, so each
// script touches one Cluster slot:
//
//	<prefix>:{p}:lock:<type>:<id>   hash: owner, count, token, acquired_at, expires_at (+ PEXPIRE)
//	<prefix>:{p}:fence              "<last token>/<partition count>": the partition's fencing counter and the count's marker
//	<prefix>:{p}:events             stream: the audit outbox
//	<prefix>:{p}:owner:<owner>      set: the owner's leases, for ReleaseAll
//	<prefix>:{p}:req:<request id>   memo of a release that deleted a lease
//	<prefix>:{p}:waiters:<type>:<id>  queue of the coordinators waiting for a resource
//	<prefix>:{p}:released           pub/sub channel of release notifications
//	<prefix>:{p}:released:<waiter>  ... addressed to one waiting coordinator
//	<prefix>:partitions             the partition count all stores must share
//
// A Layout (Store.Layout, or NewLayout for a prefix and partition count)
// names each of them; docs/redis-keys.md has redis-cli recipes to inspect
// them.
//
// A Store relies on a Redis that never drops a key on its own: before its
// first call, and again after a partition lost its data, it reads the
// maxmemory-policy of every server it writes to and refuses to run on any
// policy but noeviction (ErrUnsafeConfig; WithEvictionRisk accepts the
// risk), and it checks the partition count against the one recorded for
// the prefix and the marker of each fence (ErrPartitionMismatch).
// docs/operations.md says what configuration Redis needs, and why.
package redisstore
