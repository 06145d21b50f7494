package coordinator

import "time"

// SetPollForTest sets the waiters' fallback polling delays and returns a
// function that restores them.
func SetPollForTest(min, minNotify time.Duration) (restore func()) {
	a, b := pollMin, pollMinNotify
	pollMin, pollMinNotify = min, minNotify
	return func() { pollMin, pollMinNotify = a, b }
}
