package testutil

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) { VerifyTestMain(m) }

func TestPollReturnsOnceCheckPasses(t *testing.T) {
	calls := 0
	err := Poll(t.Context(), time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestPollReportsContextAndLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	boom := errors.New("not ready")
	err := Poll(ctx, time.Millisecond, func() error { return boom })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, boom) {
		t.Fatalf("Poll = %v, want the deadline and the last error", err)
	}
}

func TestPollStopsOnPermanentError(t *testing.T) {
	boom := errors.New("broken")
	calls := 0
	err := Poll(t.Context(), time.Millisecond, func() error {
		calls++
		if calls < 2 {
			return ErrNotYet
		}
		return fmt.Errorf("wrapped: %w", Permanent(boom))
	})
	if err != boom || calls != 2 { //nolint:errorlint // the very error, unwrapped
		t.Fatalf("Poll = %v after %d calls, want %v after 2", err, calls, boom)
	}
	if p := Permanent(boom); p.Error() != "broken" || !errors.Is(p, boom) {
		t.Fatalf("Permanent(boom) = %v", p)
	}
}

func TestPollChecksNothingAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var calls atomic.Int32
	err := Poll(ctx, time.Millisecond, func() error { calls.Add(1); return nil })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNotYet) || calls.Load() != 0 {
		t.Fatalf("Poll = %v after %d calls, want Canceled, ErrNotYet and no call", err, calls.Load())
	}
}

// recorder is a testing.TB that records Fatalf instead of ending the test.
// recorder records what a helper reports instead of ending the test.
// Its Fatalf and Skipf return, unlike testing.T's: the caller must not go
// on after a report it cares about (Unavailable goes on to Skipf after a
// Fatalf, which recorder records as a skip too).
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func (r *recorder) Skipf(format string, args ...any) { r.skip = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	Eventually(r, time.Minute, "n to reach 3", func() bool { n++; return n == 3 })
	if r.fatal != "" || n != 3 {
		t.Fatalf("Eventually failed (%q) or stopped at %d", r.fatal, n)
	}
	Eventually(r, 10*time.Millisecond, "never", func() bool { return false })
	if r.fatal != "timed out after 10ms waiting for never" {
		t.Fatalf("Eventually reported %q", r.fatal)
	}
}

func TestRequiredAndUnavailable(t *testing.T) {
	for _, tc := range []struct {
		ci, require string
		want        bool
	}{{"", "", false}, {"true", "", true}, {"", "1", true}, {"false", "0", false}} {
		t.Setenv("CI", tc.ci)
		t.Setenv("LOCKCOORD_REQUIRE_SERVICES", tc.require)
		if got := Required(); got != tc.want {
			t.Errorf("CI=%q LOCKCOORD_REQUIRE_SERVICES=%q: Required() = %v", tc.ci, tc.require, got)
		}
		r := &recorder{TB: t}
		Unavailable(r, "no %s", "redis")
		if tc.want && r.fatal != "no redis" {
			t.Errorf("Unavailable under Required reported %q, want a failure", r.fatal)
		}
		if !tc.want && (r.fatal != "" || r.skip != "no redis") {
			t.Errorf("Unavailable when not Required: failure %q, skip %q; want a skip only", r.fatal, r.skip)
		}
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(6), RandomHex(6)
	if len(a) != 12 || a == b {
		t.Fatalf("RandomHex(6) = %q, %q", a, b)
	}
}
