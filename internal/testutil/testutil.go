// Package testutil holds what every test helper of lockcoord shares:
// whether a missing service fails or skips a test, the one way to wait
// for a condition, and names of a test's own.
//
// Tests wait on a condition, never on a sleep: Eventually polls a
// condition from the test's goroutine and fails the test when it does
// not hold in time; Poll does the same for helpers and goroutines,
// returning an error instead of failing anything.
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Required reports whether a missing Redis or Postgres must fail a test
// rather than skip it: under CI=true or LOCKCOORD_REQUIRE_SERVICES=1 it
// must.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("LOCKCOORD_REQUIRE_SERVICES") == "1"
}

// Unavailable ends t because a service it needs is missing: a failure
// when Required, else a skip.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// PollInterval is how often Eventually checks its condition.
const PollInterval = 2 * time.Millisecond

// ErrNotYet is what Poll reports for a condition given as a bool that
// never held.
var ErrNotYet = errors.New("testutil: condition does not hold")

// Permanent marks an error of a Poll check as final: Poll returns it at
// once instead of trying again.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

func (p permanent) Unwrap() error { return p.err }

// Poll calls check every interval until it returns nil, and then returns
// nil, or until it returns an error made by Permanent, and then returns
// that error. When ctx ends first, it returns an error wrapping both
// ctx's error and check's last error. It never fails a test, so
// goroutines and helpers that return errors may use it.
func Poll(ctx context.Context, interval time.Duration, check func() error) error {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	last := ErrNotYet
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		}
		if last = check(); last == nil {
			return nil
		}
		if p, ok := errors.AsType[permanent](last); ok {
			return p.err
		}
		timer.Reset(interval)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}

// Eventually polls cond until it holds, and fails t with what when
// timeout passes first. The timeout bounds a wait that should end much
// sooner; it asserts nothing about speed. Call it only from the test's
// goroutine (it may call t.Fatal); elsewhere use Poll.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := Poll(ctx, PollInterval, func() error {
		if cond() {
			return nil
		}
		return ErrNotYet
	})
	if err != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// RandomHex returns n random bytes in hex: the unique part of a test's
// own key prefix or database name.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
