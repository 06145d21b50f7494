// Package features holds the executable specification of lockcoord: the
// Gherkin scenarios in concurrency.feature (exclusive leases) and
// modes.feature (shared and counted leases, upgrades, AcquireAll, retried
// requests), run by godog from `go test ./features/...`.
//
// The step definitions (steps_test.go for the lease engine,
// lifecycle_steps_test.go for keep-alives, loss, waiting and shutdown,
// modes_steps_test.go for modes and several resources)
// drive only the public API of package coordinator, on a fresh miniredis
// per scenario reached through redisstore.New. Leases expire only when a
// scenario moves Redis's clock (SetTime and FastForward), never by
// sleeping; background work (renewals, waits) is awaited with real-time
// bounds of a few seconds. The run is strict: an undefined or pending step
// fails the test.
//
// TestFeaturesOnCluster runs the same scenarios on a real Redis Cluster of
// three masters (internal/testcluster), one after another, flushed
// between them. Its clock is the machine's and cannot be moved, so there a
// step that makes time pass moves the data back instead: it takes the
// time off every key's TTL (deleting what expires), off each lease's
// acquired_at and expires_at, and off the mirror's rows; "expires N from
// now" is checked against the machine clock, allowing for the time since
// the request. TestFeaturesOnRedis runs them the same way on a real
// standalone Redis. modes.feature's retried requests call the
// redisstore.Store itself, the one place a request id is chosen by the
// caller.
package features
