package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func adminURL() string {
	if u := os.Getenv("LOCKCOORD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultAdminURL
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testDB is a Postgres database of the test's own, dropped when it ends.
type testDB struct {
	url  string // URL of the database
	name string
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		if testutil.Required() {
			t.Fatalf("postgres at %s: %v", adminURL(), err)
		}
		t.Skipf("postgres at %s not available: %v", adminURL(), err)
	}
	return c
}

// newTestDB creates an empty database (not migrated).
func newTestDB(t testing.TB) *testDB {
	t.Helper()
	ctx := context.Background()
	admin := adminConn(t)
	defer admin.Close(ctx)
	db := &testDB{name: "lockctl_test_" + randomHex(6)}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db.name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c := adminConn(t)
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+db.name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", db.name, err)
		}
	})
	u, err := url.Parse(adminURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db.name
	db.url = u.String()
	return db
}

// count runs a count query on the database.
func (db *testDB) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
