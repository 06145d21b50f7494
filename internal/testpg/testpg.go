// Package testpg gives tests Postgres databases of their own, so that
// tests never trample each other or a developer's data.
//
// New creates an empty database on the server named by
// LOCKCOORD_TEST_DATABASE_URL (default DefaultAdminURL) and drops it when
// the test ends; without Postgres it skips the test, or fails it under
// CI=true or LOCKCOORD_REQUIRE_SERVICES=1. Create and Drop do the same
// for callers without a testing.TB (godog scenarios). StartServer starts a
// throwaway Postgres cluster of the test's own, which the test may stop
// and start again.
package testpg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

// DefaultAdminURL is the server used when LOCKCOORD_TEST_DATABASE_URL is
// not set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ErrUnavailable reports that the Postgres server does not answer.
var ErrUnavailable = errors.New("testpg: postgres not available")

// adminTimeout bounds each administrative step (connect, create, drop).
const adminTimeout = 30 * time.Second

// AdminURL returns the URL of the server the tests' databases are made
// on: LOCKCOORD_TEST_DATABASE_URL, or DefaultAdminURL.
func AdminURL() string {
	if u := os.Getenv("LOCKCOORD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// DB is a database of a test's own on a Postgres server.
type DB struct {
	// Name is the database's name.
	Name string
	// URL is the connection URL of the database.
	URL string
	// AdminURL is the URL the database was created through (the
	// server's admin database).
	AdminURL string
}

// Create creates an empty database with a random name on the server at
// adminURL. An unreachable server gives an error wrapping ErrUnavailable.
func Create(ctx context.Context, adminURL string) (*DB, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("testpg: parse %s: %w", adminURL, err)
	}
	db := &DB{Name: "lockcoord_test_" + testutil.RandomHex(6), AdminURL: adminURL}
	u.Path = "/" + db.Name
	db.URL = u.String()
	err = admin(ctx, adminURL, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CREATE DATABASE "+db.Name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testpg: create database: %w", err)
	}
	return db, nil
}

// Drop drops the database, closing the sessions still on it, even when
// a test forbade connections to it.
func (db *DB) Drop(ctx context.Context) error {
	err := admin(ctx, db.AdminURL, func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS true"); err != nil {
			return err
		}
		_, err := c.Exec(ctx, "DROP DATABASE "+db.Name+" WITH (FORCE)")
		return err
	})
	if err != nil {
		return fmt.Errorf("testpg: drop database %s: %w", db.Name, err)
	}
	return nil
}

// admin runs fn on a short-lived connection to the admin database at
// adminURL.
func admin(ctx context.Context, adminURL string, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, adminURL, err)
	}
	defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
	return fn(ctx, c)
}

// New creates an empty database of t's own on the server at AdminURL and
// drops it when t ends. Without Postgres it skips t, or fails it when
// testutil.Required.
func New(t testing.TB) *DB {
	t.Helper()
	return NewOn(t, AdminURL())
}

// NewOn is New on the server at adminURL (a Server's URL, say).
func NewOn(t testing.TB, adminURL string) *DB {
	t.Helper()
	db, err := Create(context.Background(), adminURL)
	if errors.Is(err, ErrUnavailable) {
		testutil.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return db
}

// Pool returns a pool on the database, closed when t ends; configure
// adjusts its configuration (application name, timeouts, size).
func (db *DB) Pool(t testing.TB, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range configure {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect to %s: %v", db.Name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// AdminExec runs a statement on the server's admin database (roles,
// ALTER DATABASE, ending sessions), failing t on error.
func (db *DB) AdminExec(t testing.TB, sql string, args ...any) {
	t.Helper()
	err := admin(context.Background(), db.AdminURL, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Count runs a query returning one number (a count) on a short-lived
// connection to the database, failing t on error.
func (db *DB) Count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatalf("connect to %s: %v", db.Name, err)
	}
	defer func() { _ = c.Close(ctx) }()
	var n int
	if err := c.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
