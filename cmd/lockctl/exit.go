package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Exit statuses of lockctl. Every command documents the ones it uses; run
// exits with the command's own status when it ran to its end with the
// lease held. diagnostics has its own scheme (0 healthy, 1 thresholds
// exceeded, 2 could not check).
const (
	ExitOK = 0 // success
	// ExitInternal is an unexpected failure (a bug, a Redis error reply
	// that is none of the below).
	ExitInternal = 1
	// ExitUsage is bad input: an unknown flag or command, a missing
	// argument, a resource or owner that breaks a naming rule, a bad URL,
	// a partition count other than the one recorded in Redis.
	ExitUsage = 2
	// ExitConflict is a lease outcome: acquire found the resource held by
	// another owner; renew or release found the lease not held by the
	// owner or expired; inspect found the resource free.
	ExitConflict = 3
	// ExitUnavailable is a backing service (Redis, Postgres) that could
	// not be reached in time.
	ExitUnavailable = 4
	// ExitLeaseLost is run's status when the lease was lost at any moment
	// while the command ran, whatever the command's own status.
	ExitLeaseLost = 5
	// ExitAuth is a backing service that refused the credentials or the
	// permission for a command.
	ExitAuth = 6
	// ExitCannotExec is run's status when the command is not executable.
	ExitCannotExec = 126
	// ExitNotFound is run's status when the command was not found.
	ExitNotFound = 127
)

// exitStatusHelp is the table shown in the help of the root command.
const exitStatusHelp = `Exit statuses:
  0    success
  1    internal error
  2    usage: bad flag, argument, resource, owner or URL
  3    conflict: held by another owner, not held, expired, or free (inspect)
  4    Redis or Postgres unreachable
  5    run: the lease was lost while the command ran
  6    Redis or Postgres refused the credentials or a command
  126  run: the command could not be executed
  127  run: the command was not found
  run otherwise exits with the command's status (128+N when killed by
  signal N); diagnostics exits 0 healthy, 1 thresholds exceeded, 2 could
  not check.`

// exitError carries an explicit exit status; its message, if any, is
// printed on stderr.
type exitError struct {
	code int
	err  error // nil: exit silently
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith returns an error that makes lockctl exit with code, printing
// err (nil: nothing).
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// usageError is bad command line input.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// serviceError names the service an error came from, and its address.
type serviceError struct {
	service string // "Redis", "Postgres"
	addr    string
	err     error
}

func (e *serviceError) Error() string { return e.err.Error() }
func (e *serviceError) Unwrap() error { return e.err }

// classify maps an error to an exit status and the one line printed on
// stderr. redisAddr names the Redis server for network errors that were
// not wrapped in a serviceError.
func classify(err error, redisAddr, pgAddr string) (int, string) {
	if err == nil {
		return ExitOK, ""
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.err == nil {
			return xe.code, ""
		}
		return xe.code, xe.err.Error()
	}
	service, addr := "Redis", redisAddr
	var se *serviceError
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	isPG := errors.As(err, &pe)
	switch {
	case errors.As(err, &se):
		service, addr = se.service, se.addr
	case errors.As(err, &ce), isPG, errors.Is(err, pgaudit.ErrPostgres):
		service, addr = "Postgres", pgAddr
	}
	at := service
	if addr != "" {
		at += " at " + addr
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage, ue.msg
	case errors.Is(err, coordinator.ErrLeaseLost):
		return ExitLeaseLost, err.Error()
	case errors.Is(err, coordinator.ErrInvalid), errors.Is(err, redisstore.ErrPartitionMismatch):
		return ExitUsage, err.Error()
	case errors.Is(err, coordinator.ErrConflict), errors.Is(err, coordinator.ErrNotHeld),
		errors.Is(err, coordinator.ErrExpired):
		return ExitConflict, err.Error()
	case isAuthError(err):
		cause := rootCause(err)
		if pe != nil {
			cause = pe
		}
		return ExitAuth, fmt.Sprintf("%s refused the credentials: %v", at, cause)
	case errors.Is(err, pgaudit.ErrPostgres) && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// a Postgres that stalls: the mirror gave its batch up
		return ExitUnavailable, fmt.Sprintf("%s did not answer in time: %v", at, err)
	case isUnreachable(err):
		return ExitUnavailable, fmt.Sprintf("cannot reach %s: %v", at, rootCause(err))
	}
	return ExitInternal, err.Error()
}

// isAuthError reports a refused login or command permission.
func isAuthError(err error) bool {
	if redis.IsAuthError(err) || redis.IsPermissionError(err) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		m := re.Error()
		return strings.HasPrefix(m, "ERR AUTH") || strings.HasPrefix(m, "ERR invalid password") ||
			strings.HasPrefix(m, "WRONGPASS") || strings.HasPrefix(m, "NOAUTH") || strings.HasPrefix(m, "NOPERM")
	}
	var pa interface{ SQLState() string }
	if errors.As(err, &pa) {
		switch pa.SQLState() {
		case "28000", "28P01", "42501": // invalid authorization, invalid password, insufficient privilege
			return true
		}
	}
	return false
}

// isUnreachable reports an error of the network path to a service: the
// connection was refused, reset or timed out, or the name did not resolve.
func isUnreachable(err error) bool {
	var oe *net.OpError
	var dnse *net.DNSError
	var te *tls.RecordHeaderError
	return errors.As(err, &oe) || errors.As(err, &dnse) || errors.As(err, &te) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrClosed)
}

// rootCause returns the innermost error of a chain of single wraps, for a
// message that says what failed without repeating every layer.
func rootCause(err error) error {
	for {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return oe
		}
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// oneLine flattens a message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
