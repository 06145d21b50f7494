package benchmarks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// defaultDatabaseURL is the Postgres the audit case connects to as an
// administrator, to create and drop a database of its own.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// database creates an empty database, migrated for pgaudit, and drops it
// when tb ends. It skips tb when Postgres does not answer (fails it under
// CI).
func database(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	admin := os.Getenv("LOCKCOORD_BENCH_DATABASE_URL")
	if admin == "" {
		admin = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		if required() {
			tb.Fatalf("postgres: %v", err)
		}
		tb.Skipf("postgres not available: %v", err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "lockcoord_bench_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(admin)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := pgaudit.Migrate(ctx, pool, zerolog.Nop()); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return pool
}

// BenchmarkMirrorDrain measures case 7's second figure: the audit mirror
// (pgaudit.Mirror.Drain, default batch size) applying a backlog of events
// from the partition streams into Postgres, the locks mirror and the
// lock_events ledger. One op is one event; the backlog (b.N events, from
// acquire+release pairs on distinct keys by 64 goroutines) is written
// before the timer starts.
func BenchmarkMirrorDrain(b *testing.B) {
	pool := database(b)
	b.Run("lib=lockcoord", func(b *testing.B) {
		ctx := context.Background()
		c, _ := newClient(b)
		flush(b, c)
		if _, err := pool.Exec(ctx, "TRUNCATE locks, lock_events"); err != nil {
			b.Fatal(err)
		}
		st := redisstore.New(c, redisstore.WithPrefix(randomPrefix()))
		pairs := (b.N + 1) / 2
		backlog(b, st, pairs)
		m := pgaudit.NewMirror(pool, st)
		b.ResetTimer()
		n, err := m.Drain(ctx)
		b.StopTimer()
		if err != nil {
			b.Fatalf("drain: %v", err)
		}
		if n != 2*pairs {
			b.Fatalf("drained %d events, want %d", n, 2*pairs)
		}
		var ledger int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM lock_events").Scan(&ledger); err != nil {
			b.Fatal(err)
		}
		if ledger != n {
			b.Fatalf("ledger has %d rows after draining %d events", ledger, n)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	})
}

// backlog writes `pairs` acquire+release pairs on distinct keys through
// st with 64 goroutines: two outbox events each.
func backlog(tb testing.TB, st *redisstore.Store, pairs int) {
	tb.Helper()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	owners := workerNames(64)
	for w := range 64 {
		wg.Go(func() {
			ctx := context.Background()
			for {
				i := int(next.Add(1)) - 1
				if i >= pairs {
					return
				}
				req := coordinator.Request{Resource: resource("e" + strconv.Itoa(i)), Owner: owners[w],
					TTL: leaseTTL, RequestID: "b" + strconv.Itoa(i)}
				_, err := st.Acquire(ctx, req)
				if err == nil {
					req.RequestID += "r"
					_, err = st.Release(ctx, req)
				}
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		tb.Fatalf("backlog: %v", ferr)
	}
}
