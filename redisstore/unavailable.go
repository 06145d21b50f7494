package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// storeError returns err, the failure of a call to Redis, wrapping
// coordinator.ErrUnavailable when Redis could not be reached (see
// unreachable), ErrCorrupt or ErrOutbox when it is the error reply of a
// script that refused to change anything (see scriptError).
func storeError(err error) error {
	if err == nil || errors.Is(err, coordinator.ErrUnavailable) {
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", coordinator.ErrUnavailable, err)
	}
	return scriptError(err)
}

// unreachable reports an error of the network path to Redis, not of
// Redis itself: a refused, reset or broken connection, a dial or read
// that timed out, a name that did not resolve, a TLS handshake that
// failed, a closed client, a pool with no connection to give. A Redis
// error reply, and the caller's own cancellation, are not.
func unreachable(err error) bool {
	if _, ok := errors.AsType[redis.Error](err); ok {
		return false // Redis answered
	}
	var oe *net.OpError
	var dnse *net.DNSError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &oe), errors.As(err, &dnse), errors.As(err, &rhe):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false // the caller gave up, Redis may be fine
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, redis.ErrClosed)
}

// opError names the operation that failed in the caller's terms, e.g.
// "redisstore: acquire plan/42: coordinator: store unavailable: dial tcp
// 127.0.0.1:6379: connect: connection refused".
func opError(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w", op, storeError(err))
}
