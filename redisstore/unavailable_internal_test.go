package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// TestUnreachable: the network path failing is ErrUnavailable; Redis
// answering, and the caller giving up, are not.
func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused dial", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"name does not resolve", fmt.Errorf("dial: %w", &net.DNSError{Err: "no such host", Name: "redis.invalid"}), true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"closed client", redis.ErrClosed, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"an error reply", redis.ErrNoScript, false},
		{"the caller's cancellation", context.Canceled, false},
		{"the caller's deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"something else", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreachable(tc.err); got != tc.want {
				t.Fatalf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
			err := storeError(tc.err)
			if errors.Is(err, coordinator.ErrUnavailable) != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("storeError(%v) = %v: ErrUnavailable %v, want %v", tc.err, err, errors.Is(err, coordinator.ErrUnavailable), tc.want)
			}
			if again := storeError(err); again != err { //nolint:errorlint // the very same value: not wrapped again
				t.Fatalf("storeError wrapped twice: %v", again)
			}
		})
	}
	if storeError(nil) != nil {
		t.Fatal("storeError(nil) != nil")
	}
}
