// Package pgdb creates throwaway Postgres databases for the safety tests,
// on the server named by LOCKCOORD_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), and drops
// them when the test ends.
package pgdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// DefaultAdminURL is the server used when LOCKCOORD_TEST_DATABASE_URL is
// not set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the URL of the server's admin database.
func AdminURL() string {
	if u := os.Getenv("LOCKCOORD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		if testredis.Required() {
			t.Fatalf("postgres at %s: %v", AdminURL(), err)
		}
		t.Skipf("postgres at %s not available: %v", AdminURL(), err)
	}
	return c
}

// New creates an empty database of the test's own and returns a pool on
// it; both are gone when t ends. It skips t when Postgres is unreachable
// (fails it under CI, as testredis does).
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	a := admin(t)
	defer func() { _ = a.Close(ctx) }()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "lockcoord_chaos_" + hex.EncodeToString(b[:])
	if _, err := a.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c := admin(t)
		defer func() { _ = c.Close(ctx) }()
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("parse %s: %v", AdminURL(), err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}
