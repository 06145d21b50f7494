package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestAuditUnderPostgresOutage is scenario 6: workers change leases on a
// real Redis while the pgaudit mirror copies the outbox streams into a
// Postgres of the test's own, which is stopped twice (once as a crash,
// pg_ctl -m immediate, once as a fast shutdown) and started again. Once
// the mirror has caught up the ledger holds exactly one row per stream
// entry (none lost, none doubled) and the locks table equals the leases
// in Redis.
func TestAuditUnderPostgresOutage(t *testing.T) {
	parallel(t)
	var (
		changes = size(1500, 10000) // lease changes (stream events)
		down    = size(time.Second, 3*time.Second)
		nRes    = 40
		nWork   = 4
	)
	pg := testpg.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), size(3*time.Minute, 20*time.Minute))
	defer cancel()
	cfg, err := pgxpool.ParseConfig(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pgaudit.Migrate(ctx, pool, nopLogger()); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	w := newWorld(t, worldConfig{client: clientOptions(5 * time.Second), store: []redisstore.Option{redisstore.WithPartitions(4)}})
	mirrorClient := redis.NewClient(&redis.Options{Addr: w.srv.Addr, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = mirrorClient.Close() })
	store := w.store(mirrorClient)
	reg := prometheus.NewRegistry()
	m := pgaudit.NewMirror(pool, store, pgaudit.WithBlock(20*time.Millisecond), pgaudit.WithBatchSize(100),
		pgaudit.WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond), pgaudit.WithApplyTimeout(2*time.Second),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithTrimInterval(-1), pgaudit.WithMetrics(reg))
	mctx, mstop := context.WithCancel(ctx)
	var mwg sync.WaitGroup
	mwg.Go(func() {
		if err := m.Run(mctx); err != nil {
			t.Errorf("mirror: %v", err)
		}
	})
	defer func() { mstop(); mwg.Wait() }()

	// the workload: cycles of acquire, re-entry, renewal, release
	var events atomic.Int64
	rs := resources("audit", nRes)
	wctx, wstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range nWork {
		wk := w.worker(i)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 6))
			ttl := coordinator.TTL(time.Hour) // no lease expires: every change has its event
			for wctx.Err() == nil {
				r := rs[rng.IntN(len(rs))]
				if _, err := wk.c.Acquire(wctx, r, wk.owner, ttl); err != nil {
					if !errors.Is(err, coordinator.ErrConflict) && wctx.Err() == nil {
						t.Errorf("acquire: %v", err)
						return
					}
					continue
				}
				events.Add(1)
				for range rng.IntN(4) {
					var err error
					if rng.IntN(2) == 0 {
						_, err = wk.c.Acquire(wctx, r, wk.owner, ttl)
					} else {
						_, err = wk.c.Renew(wctx, r, wk.owner, ttl)
					}
					if err != nil {
						if wctx.Err() == nil {
							t.Errorf("re-enter or renew: %v", err)
						}
						return
					}
					events.Add(1)
				}
				if rng.IntN(5) == 0 {
					continue // left held: the locks table must show it
				}
				for { // every hold, those left earlier too
					l, err := wk.c.Release(wctx, r, wk.owner)
					if err != nil {
						if wctx.Err() == nil {
							t.Errorf("release: %v", err)
						}
						return
					}
					events.Add(1)
					if l.Count == 0 {
						break
					}
				}
			}
		})
	}

	// reached waits until the workload made n changes (or failed, or ran
	// out of time)
	reached := func(n int) {
		_ = testutil.Poll(ctx, 5*time.Millisecond, func() error {
			if events.Load() < int64(n) && !t.Failed() {
				return testutil.ErrNotYet
			}
			return nil
		})
	}
	// two outages, at a third and two thirds of the changes
	var outages []string
	var downFor time.Duration
	for i, immediate := range []bool{true, false} {
		reached(changes * (i + 1) / 3)
		at := events.Load()
		start := time.Now()
		if err := pg.Stop(immediate); err != nil {
			t.Fatal(err)
		}
		time.Sleep(down) // the outage itself: what the mirror must ride out
		if err := pg.Start(); err != nil {
			t.Fatal(err)
		}
		downFor += time.Since(start)
		outages = append(outages, fmt.Sprintf("%s stop after %d changes, down %v",
			map[bool]string{true: "immediate", false: "fast"}[immediate], at, time.Since(start).Round(10*time.Millisecond)))
	}
	reached(changes)
	wstop()
	wg.Wait()
	if t.Failed() {
		return
	}

	// the streams, the truth
	type entry struct {
		partition int
		id        string
	}
	streamEntries := map[entry]bool{}
	for p := range store.Layout().Partitions() {
		msgs, err := w.admin.XRange(ctx, store.Layout().StreamKey(p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range msgs {
			streamEntries[entry{p, msg.ID}] = true
		}
	}
	total := len(streamEntries)
	// wait until the mirror caught up
	cctx, ccancel := context.WithTimeout(ctx, size(time.Minute, 5*time.Minute))
	defer ccancel()
	var rows int
	err = testutil.Poll(cctx, 50*time.Millisecond, func() error {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM lock_events`).Scan(&rows); err != nil {
			return err
		}
		if rows < total {
			return testutil.ErrNotYet
		}
		return nil
	})
	if err != nil && !errors.Is(err, testutil.ErrNotYet) {
		t.Fatal(err)
	}
	mstop()
	mwg.Wait()

	// one ledger row per stream entry
	ledger := map[entry]int{}
	dbRows, err := pool.Query(ctx, `SELECT partition, stream_id FROM lock_events`)
	if err != nil {
		t.Fatal(err)
	}
	for dbRows.Next() {
		var e entry
		if err := dbRows.Scan(&e.partition, &e.id); err != nil {
			t.Fatal(err)
		}
		ledger[e]++
	}
	if err := dbRows.Err(); err != nil {
		t.Fatal(err)
	}
	lost, doubled, foreign := 0, 0, 0
	for e := range streamEntries {
		switch ledger[e] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	for e := range ledger {
		if !streamEntries[e] {
			foreign++
		}
	}

	// the locks table against the leases in Redis
	redisLeases := map[coordinator.Resource]string{}
	keys, err := w.keys(ctx, w.layout().LeaseKeyPattern(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		r, _, err := store.Layout().ParseLeaseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		h, err := w.admin.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		redisLeases[r] = h["owner"] + " " + h["token"] + " " + h["count"] + " " + h["expires_at"]
	}
	mirrored := map[coordinator.Resource]string{}
	lockRows, err := pool.Query(ctx, `SELECT resource_type, resource_id, owner_id, token, hold_count, expires_at FROM locks`)
	if err != nil {
		t.Fatal(err)
	}
	for lockRows.Next() {
		var r coordinator.Resource
		var owner string
		var token int64
		var count int
		var exp time.Time
		if err := lockRows.Scan(&r.Type, &r.ID, &owner, &token, &count, &exp); err != nil {
			t.Fatal(err)
		}
		mirrored[r] = owner + " " + strconv.FormatInt(token, 10) + " " + strconv.Itoa(count) + " " + strconv.FormatInt(exp.UnixMilli(), 10)
	}
	if err := lockRows.Err(); err != nil {
		t.Fatal(err)
	}
	var diff []string
	for r, v := range redisLeases {
		if mirrored[r] != v {
			diff = append(diff, fmt.Sprintf("%s: Redis %q, locks %q", r, v, mirrored[r]))
		}
	}
	for r, v := range mirrored {
		if _, ok := redisLeases[r]; !ok {
			diff = append(diff, fmt.Sprintf("%s: not in Redis, locks %q", r, v))
		}
	}
	retries := counterValue(t, reg, "retries_total")
	report(t, "audit under Postgres outages: %d lease changes (%d stream events) by %d workers on %d resources; %s (%v down in all); mirror retries %.0f",
		events.Load(), total, nWork, nRes, strings.Join(outages, ", "), downFor.Round(10*time.Millisecond), retries)
	report(t, "  ledger: %d rows for %d events: %d lost, %d duplicated, %d not in the streams; locks: %d rows, Redis %d leases, %d differences",
		rows, total, lost, doubled, foreign, len(mirrored), len(redisLeases), len(diff))
	if lost != 0 || doubled != 0 || foreign != 0 {
		t.Errorf("ledger: %d lost, %d duplicated, %d not in the streams", lost, doubled, foreign)
	}
	if len(diff) != 0 {
		t.Errorf("locks differ from Redis: %s", strings.Join(diff, "\n"))
	}
	if retries == 0 {
		t.Errorf("control failed: the mirror never met the outage (no retry)")
	}
}

// counterValue returns the value of the counter whose name ends with
// suffix in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, suffix string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), suffix) {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", suffix)
	return 0
}
