// Package features holds the executable specification of lockcoord: the
// Gherkin scenarios in concurrency.feature, run by godog from
// `go test ./features/...`.
//
// The step definitions (steps_test.go for the lease engine,
// lifecycle_steps_test.go for keep-alives, loss, waiting and shutdown)
// drive only the public API of package coordinator, on a fresh miniredis
// per scenario reached through redisstore.New. Leases expire only when a
// scenario moves Redis's clock (SetTime and FastForward), never by
// sleeping; background work (renewals, waits) is awaited with real-time
// bounds of a few seconds. The run is strict: an undefined or pending step
// fails the test.
//
// TestFeaturesOnCluster runs the same scenarios on a real Redis Cluster of
// three masters (internal/testcluster), one after another, flushed
// between them. Its clock cannot be moved, so the scenarios with a step
// that makes time pass are skipped there, and "expires N from now" is
// checked against the machine clock, allowing the time since the request.
package features
