package pgaudit

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPostgres and ErrRedis match (errors.Is) every error of a failed
// Postgres or Redis call, so that a caller can tell which service failed:
// a Postgres that stalls is not a Redis that cannot be reached.
var (
	ErrPostgres = errors.New("pgaudit: postgres failed")
	ErrRedis    = errors.New("pgaudit: redis failed")
)

// Services named by a ServiceError.
const (
	ServicePostgres = "Postgres"
	ServiceRedis    = "Redis"
)

// ServiceError is a failed call to Postgres or Redis: what the mirror was
// doing, the service, and the service's error. It matches ErrPostgres or
// ErrRedis.
type ServiceError struct {
	Service string // ServicePostgres or ServiceRedis
	Op      string // what failed, e.g. "apply batch"
	Err     error
}

func (e *ServiceError) Error() string { return "pgaudit: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the service's error.
func (e *ServiceError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's service.
func (e *ServiceError) Is(target error) bool {
	return target == ErrPostgres && e.Service == ServicePostgres || target == ErrRedis && e.Service == ServiceRedis
}

func pgError(op string, err error) error {
	return &ServiceError{Service: ServicePostgres, Op: op, Err: err}
}

func redisError(op string, err error) error {
	return &ServiceError{Service: ServiceRedis, Op: op, Err: err}
}

// refusedData reports whether Postgres refused err's statement for the
// data it was given, so that the same data would fail again: a data
// exception (SQLSTATE class 22: bad encoding, a NUL, a value out of
// range), an integrity constraint (23) or a limit (54: an index row too
// large). A failure of the connection, a timeout or a missing privilege is
// not, and is retried.
func refusedData(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// pgMessage returns Postgres's own message of err (with its SQLSTATE).
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}
