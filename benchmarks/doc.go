// Package benchmarks measures lockcoord on a real Redis against the
// physical limit of a Redis lock (the round-trip floor: one EVALSHA to
// take a key, one to drop it) and against the two Go libraries users
// compare it with, github.com/bsm/redislock and github.com/go-redsync/redsync,
// all driven through go-redis clients with the same settings.
//
// The package has no API: it is its own module so that the peers stay out
// of lockcoord's dependencies, and its benchmarks are in the _test files:
//
//	BenchmarkFloor       PING, the loopback round trip (what redis-cli --latency shows)
//	BenchmarkPairs       acquire+release on distinct keys, 1 and 64 goroutines (cases 1-3, 7)
//	BenchmarkNetPairs    the same over a link with 200 µs added each way (issue 15)
//	BenchmarkReentrant   re-entrant acquire (count 2) and two releases (case 4)
//	BenchmarkRenew       renewal of a held lease (case 4)
//	BenchmarkContention  64 goroutines on one key, 1 ms hold (case 5)
//	BenchmarkHandoff     release to the next waiter holding the lease (case 6)
//	BenchmarkMirrorDrain the audit mirror draining a backlog into Postgres (case 7)
//	BenchmarkMemory      Redis memory per held lease over 100,000 leases, Inspect (case 8)
//	BenchmarkList        lockctl list over 100,000 leases (case 8)
//	BenchmarkFailover    an election's leader process killed, until the next leads (issue 14)
//	BenchmarkExpiryEvent a lease left to expire, until its watcher has the event (issue 14)
//
// TestBenchBar (run with -bar 5 by run.sh smoke, in CI) compares
// lockcoord's pairs/s with the floor's in alternating short runs and
// prints the ratios, failing on errors only.
//
// Each benchmark starts a throwaway redis-server on a free loopback port
// (one per test binary, flushed between cases); the audit case creates and
// drops its own Postgres database (LOCKCOORD_BENCH_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/postgres). run.sh runs the suite,
// cmd/benchload measures the load outside it (run.sh publishes nothing
// measured on a busy machine) and cmd/benchtable turns its output into
// docs/benchmarks.md.
package benchmarks
