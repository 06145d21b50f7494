package testutil

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakWait bounds how long VerifyTestMain waits for goroutines to end.
const leakWait = 15 * time.Second

// VerifyTestMain runs a package's tests and then fails the run if they
// left a goroutine behind, as goleak.VerifyTestMain does, but it waits up
// to 15 s for goroutines that end on their own. goleak's own retries give
// up after about a second, and go-redis's pool keeps a probe running
// after its client is closed: once PoolSize dials have failed it dials the
// server again every second until one succeeds or it sees the pool
// closed, which takes up to a second plus the dial timeout. A goroutine
// that is still there after the wait is reported as a leak.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := Leaked(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked reports the goroutines left behind, as goleak.Find does, after
// waiting up to 15 s for them to end (see VerifyTestMain); nil when none
// is left. It serves a TestMain that stops services of its own after the
// tests and before the check.
func Leaked(opts ...goleak.Option) error { return settle(leakWait, opts...) }

// settle looks for leaked goroutines until none is found or d passes,
// and returns goleak's last finding.
func settle(d time.Duration, opts ...goleak.Option) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	if err := Poll(ctx, 100*time.Millisecond, func() error {
		last = goleak.Find(opts...)
		return last
	}); err != nil {
		return last
	}
	return nil
}
