//go:build !linux

package benchmarks_test

import "time"

// sleeper waits with Go's timers, whose resolution may be a millisecond
// (Linux has a precise one, sleeper_linux_test.go): the delay proxy's
// figures are then coarser.
type sleeper struct{}

func newSleeper() (*sleeper, error) { return &sleeper{}, nil }

// sleepUntil returns at t, or at once when t has passed.
func (s *sleeper) sleepUntil(t time.Time) error {
	time.Sleep(time.Until(t))
	return nil
}

func (s *sleeper) close() {}
