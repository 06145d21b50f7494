package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestClassify(t *testing.T) {
	r := coordinator.Plan("1")
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		err  error
		code int
		msg  string
	}{
		{nil, ExitOK, ""},
		{exitWith(9, nil), 9, ""},
		{exitWith(ExitLeaseLost, errors.New("gone")), ExitLeaseLost, "gone"},
		{usagef("bad %s", "flag"), ExitUsage, "bad flag"},
		{fmt.Errorf("x: %w", &coordinator.ValidationError{Field: "owner", Value: "", Rule: "must be 1-512 bytes"}), ExitUsage, "must be 1-512 bytes"},
		{fmt.Errorf("%w: prefix p", redisstore.ErrPartitionMismatch), ExitUsage, "partition count mismatch"},
		{&coordinator.ConflictError{Resource: r, Holder: "w2"}, ExitConflict, `held by "w2"`},
		{&coordinator.LeaseError{Op: "renew", Resource: r, Owner: "w", Err: coordinator.ErrExpired}, ExitConflict, "expired"},
		{&coordinator.LostError{Resource: r, Owner: "w", Reason: coordinator.ErrNotHeld}, ExitLeaseLost, "lease lost"},
		{fmt.Errorf("redisstore: acquire: %w", refused), ExitUnavailable, "cannot reach Redis at 10.0.0.1:6379: dial tcp: connection refused"},
		{context.DeadlineExceeded, ExitUnavailable, "cannot reach Redis at 10.0.0.1:6379"},
		{&serviceError{service: "Postgres", addr: "db:5432/x", err: refused}, ExitUnavailable, "cannot reach Postgres at db:5432/x"},
		{fmt.Errorf("q: %w", &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}),
			ExitAuth, "Postgres at pg:5432/db refused the credentials: FATAL: password authentication failed (SQLSTATE 28P01)"},
		{&pgconn.PgError{Severity: "ERROR", Code: "42P01", Message: "relation does not exist"}, ExitInternal, "relation does not exist"},
		{errors.New("something else"), ExitInternal, "something else"},
	}
	for _, c := range cases {
		code, msg := classify(c.err, "10.0.0.1:6379", "pg:5432/db")
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("classify(%v) = %d %q, want %d containing %q", c.err, code, msg, c.code, c.msg)
		}
	}
	if got := oneLine("a\n  b\tc\n"); got != "a b c" {
		t.Fatalf("oneLine = %q", got)
	}
	if (&exitError{code: 3}).Error() != "exit status 3" {
		t.Fatal("exitError without a message")
	}
}
