package testpg_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exists reports whether the database name exists on the server at admin.
func exists(t *testing.T, admin, name string) bool {
	t.Helper()
	c, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestNewDatabaseIsOwnAndDropped(t *testing.T) {
	var db *testpg.DB
	t.Run("test", func(t *testing.T) {
		db = testpg.New(t)
		other := testpg.New(t)
		if db.Name == other.Name || db.URL == other.URL || db.AdminURL != testpg.AdminURL() {
			t.Fatalf("two databases %+v and %+v", db, other)
		}
		pool := db.Pool(t, func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["application_name"] = "testpg" })
		if _, err := pool.Exec(t.Context(), "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"); err != nil {
			t.Fatal(err)
		}
		if n := db.Count(t, "SELECT count(*) FROM t WHERE x > $1", 0); n != 2 {
			t.Fatalf("Count = %d, want 2", n)
		}
		if n := db.Count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'testpg'"); n != 1 {
			t.Fatalf("%d sessions of the configured pool, want 1", n)
		}
		if n := other.Count(t, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"); n != 0 {
			t.Fatalf("the other database sees the table")
		}
		// a test may forbid connections: the drop still works
		db.AdminExec(t, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS false")
		if !exists(t, db.AdminURL, db.Name) {
			t.Fatal("database missing while the test runs")
		}
	})
	if exists(t, db.AdminURL, db.Name) {
		t.Fatalf("database %s left after the test", db.Name)
	}
}

func TestCreateWithoutServer(t *testing.T) {
	port, err := testredis.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = testpg.Create(t.Context(), "postgres://postgres@127.0.0.1:"+strconv.Itoa(port)+"/postgres?sslmode=disable")
	if !errors.Is(err, testpg.ErrUnavailable) {
		t.Fatalf("Create on a closed port: %v, want ErrUnavailable", err)
	}
	if _, err := testpg.Create(t.Context(), "::not a url"); err == nil || errors.Is(err, testpg.ErrUnavailable) {
		t.Fatalf("Create on a bad URL: %v", err)
	}
	db := &testpg.DB{Name: "lockcoord_test_missing", AdminURL: testpg.AdminURL()}
	if err := db.Drop(t.Context()); err == nil {
		t.Fatal("dropped a database that does not exist")
	}
}

func TestThrowawayServer(t *testing.T) {
	srv := testpg.StartServer(t)
	db := testpg.NewOn(t, srv.URL)
	pool := db.Pool(t)
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err == nil {
		t.Fatal("started a running server")
	}
	for _, immediate := range []bool{false, true} {
		if err := srv.Stop(immediate); err != nil {
			t.Fatal(err)
		}
		if err := srv.Stop(immediate); err != nil {
			t.Fatalf("stopping a stopped server: %v", err)
		}
		if err := pool.Ping(t.Context()); err == nil {
			t.Fatalf("stopped server (immediate %v) answered", immediate)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		if n := db.Count(t, "SELECT 7"); n != 7 {
			t.Fatalf("after a restart: %d", n)
		}
	}
}
