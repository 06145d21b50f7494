package pgaudit_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// A worker process runs the mirror beside its coordinator; it stops with
// the context, after applying the batch in hand.
func ExampleMirror_Run() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pool, err := pgxpool.New(ctx, "postgres://lockcoord_mirror@db.internal/audit")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	store := redisstore.New(redis.NewClient(&redis.Options{Addr: "redis.internal:6379"}))
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()

	if _, err := pgaudit.Migrate(ctx, pool, log); err != nil {
		panic(err)
	}
	m := pgaudit.NewMirror(pool, store, pgaudit.WithLogger(log))
	go func() {
		if err := m.Run(ctx); err != nil {
			log.Error().Err(err).Msg("mirror stopped")
		}
	}()
	// ... the worker takes leases through coordinator.New(store) ...
}

// A monitoring job prints the report and exits with its verdict.
func ExampleReport_WriteTable() {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r := pgaudit.Report{At: at, Prefix: "lockcoord", Partitions: 16, Group: pgaudit.DefaultGroup,
		HoldBudget: time.Hour, LeasesHeld: 2, RowsMirrored: 3, StaleCount: 1,
		Stale: []pgaudit.Row{{Resource: coordinator.Plan("42"), Owner: "worker-7", Token: 1893553000000000,
			Count: 1, AcquiredAt: at.Add(-time.Hour), ExpiresAt: at.Add(-55 * time.Minute)}},
		Lag: pgaudit.Lag{Entries: 12, Pending: 2, Oldest: 80 * time.Millisecond}}
	_ = r.WriteTable(os.Stdout)
	th := pgaudit.DefaultThresholds()
	fmt.Println(r.Problems(th), "exit", r.ExitCode(th))
	th.MaxStale = 0
	fmt.Println(r.Problems(th), "exit", r.ExitCode(th))
	// Output:
	// lockcoord diagnostics: prefix lockcoord, 16 partitions, group lockcoord-mirror, redis time 2030-01-02T03:04:05.000Z
	//
	// leases held (redis)         2
	// rows mirrored (postgres)    3
	// stale leases                1
	// missing from the mirror     0
	// held longer than 1h0m0s     0
	// stream entries              12
	// not yet read by the mirror  0
	// read, not acknowledged      2
	// oldest unacknowledged       80ms
	// dead letters (not applied)  0
	//
	// STALE LEASES (expired, gone from Redis)
	// RESOURCE  OWNER     TOKEN             COUNT  ACQUIRED AT               EXPIRED AT
	// plan/42   worker-7  1893553000000000  1      2030-01-02T02:04:05.000Z  2030-01-02T02:09:05.000Z
	// [] exit 0
	// [1 stale leases (at most 0 allowed)] exit 1
}
