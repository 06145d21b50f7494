// Package features holds the executable specification of lockcoord: the
// Gherkin scenarios in concurrency.feature, run by godog from
// `go test ./features/...`.
//
// The step definitions (features_test.go, steps_test.go) drive only the
// public API of package coordinator, on a fresh miniredis per scenario
// reached through redisstore.New; time passes through miniredis (SetTime
// and FastForward), never by sleeping. The run is strict: an undefined or
// pending step fails the test.
package features
