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
package features
