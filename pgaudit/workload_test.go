package pgaudit_test

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

	"github.com/jackc/pgx/v5"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// workload changes leases at random: acquire, re-enter, renew, release one
// hold or all, by several owners, over a few resources, and (on miniredis,
// when expire is set) lets time pass so that leases expire.
type workload struct {
	rd        *redisEnv
	rng       *rand.Rand
	resources []coordinator.Resource
	owners    []string
	expire    bool
}

func newWorkload(rd *redisEnv, seed uint64, resources, owners int, expire bool) *workload {
	w := &workload{rd: rd, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), expire: expire}
	types := []string{"plan", "project", "job"}
	for i := range resources {
		w.resources = append(w.resources, coordinator.Resource{Type: types[i%3], ID: "r" + strconv.Itoa(i)})
	}
	for i := range owners {
		w.owners = append(w.owners, "worker-"+strconv.Itoa(i))
	}
	return w
}

// step makes one random change attempt (it may fail: a conflict, a lease
// gone) and returns whether it failed for another reason.
func (w *workload) step(t testing.TB) {
	t.Helper()
	r := w.resources[w.rng.IntN(len(w.resources))]
	o := w.owners[w.rng.IntN(len(w.owners))]
	ttl := time.Duration(1+w.rng.IntN(20)) * time.Second
	if !w.expire {
		ttl = time.Hour
	}
	var err error
	switch k := w.rng.IntN(12); {
	case k < 5:
		_, err = w.rd.acquire(t, r, o, ttl)
	case k < 7:
		err = w.rd.renew(t, r, o, ttl)
	case k < 9:
		err = w.rd.release(t, r, o, false)
	case k < 10:
		err = w.rd.release(t, r, o, true)
	case k < 11:
		if holder, herr := w.rd.store.Inspect(context.Background(), r); herr == nil && w.rng.IntN(4) == 0 {
			_, err = w.rd.store.ForceRelease(context.Background(), r, "force-"+strconv.Itoa(w.rng.IntN(1e9)))
			_ = holder
		}
	default:
		if w.expire {
			w.rd.advance(time.Duration(w.rng.IntN(4000)) * time.Millisecond)
		}
	}
	var ce *coordinator.ConflictError
	if err != nil && !errors.As(err, &ce) && !errors.Is(err, coordinator.ErrNotHeld) && !errors.Is(err, coordinator.ErrExpired) {
		t.Fatalf("workload: %v", err)
	}
}

// cycle takes a lease, changes it a few times and (mostly) releases it:
// several events per call, few conflicts.
func (w *workload) cycle(t testing.TB) {
	t.Helper()
	r := w.resources[w.rng.IntN(len(w.resources))]
	o := w.owners[w.rng.IntN(len(w.owners))]
	if _, err := w.rd.acquire(t, r, o, time.Hour); err != nil {
		var ce *coordinator.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("workload: %v", err)
		}
		return
	}
	for range w.rng.IntN(4) {
		var err error
		switch w.rng.IntN(3) {
		case 0:
			_, err = w.rd.acquire(t, r, o, time.Hour)
		case 1:
			err = w.rd.renew(t, r, o, time.Hour)
		default:
			err = w.rd.release(t, r, o, false)
		}
		if err != nil && !errors.Is(err, coordinator.ErrNotHeld) && !errors.Is(err, coordinator.ErrExpired) {
			t.Fatalf("workload: %v", err)
		}
	}
	if w.rng.IntN(4) > 0 {
		if err := w.rd.release(t, r, o, true); err != nil && !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("workload: %v", err)
		}
	}
}

func TestMirrorMatchesRedisAfterRandomWorkload(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	// small batches: many transactions, and the events of one lease spread over several
	m := mirror(pg.pool, rd, pgaudit.WithBatchSize(7), pgaudit.WithTrimInterval(-1))
	w := newWorkload(rd, 42, 25, 5, true)
	for i := range 3000 {
		w.step(t)
		if i%300 == 299 {
			drain(t, m)
			// rows of leases that expired in Redis are the only difference
			if _, err := m.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			sameLeases(t, rd, pg)
		}
	}
	drain(t, m)
	if _, err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	sameLeases(t, rd, pg)
	ledgerMatches(t, pg, rd.entries(t))
	t.Logf("%d events, %d leases held, %d expired", rd.streamLen(t), len(rd.redisLeases(t)),
		pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired'"))
	if pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired'") == 0 {
		t.Fatal("the workload let no lease expire")
	}
}

// chaos cuts the database off from the mirror's connections again and
// again: refuses new connections and terminates the open ones, then lets
// them in again.
func chaos(ctx context.Context, pg *pgEnv, app string, down, up time.Duration) (cuts int, err error) {
	// ctx only says when to stop, between outages: the admin's statements
	// run to their end, since pgx closes a connection whose query ctx
	// cancels, and the database must be left accepting connections
	bg := context.WithoutCancel(ctx)
	admin, err := pgx.Connect(bg, pg.AdminURL)
	if err != nil {
		return 0, err
	}
	defer admin.Close(bg)
	allow := func(yes bool) error {
		_, err := admin.Exec(bg, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pg.Name, yes))
		return err
	}
	for ctx.Err() == nil {
		if err := allow(false); err != nil {
			return cuts, err
		}
		if _, err := admin.Exec(bg, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND application_name = $2`, pg.Name, app); err != nil {
			return cuts, errors.Join(err, allow(true))
		}
		cuts++
		time.Sleep(down) // the outage and the calm after it: the scenario's schedule
		if err := allow(true); err != nil {
			return cuts, err
		}
		time.Sleep(up)
	}
	return cuts, nil
}

func TestPostgresOutageLosesAndDoublesNothing(t *testing.T) {
	pg, rd := newDB(t), newReal(t)
	const app = "lockcoord-mirror-under-test"
	m := mirror(pg.newPool(t, app), rd, pgaudit.WithBatchSize(100), pgaudit.WithTrimInterval(-1),
		pgaudit.WithApplyTimeout(2*time.Second), pgaudit.WithCleanupInterval(-1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	cctx, stopChaos := context.WithCancel(ctx)
	var cuts int
	var chaosErr error
	var wg sync.WaitGroup
	wg.Go(func() { cuts, chaosErr = chaos(cctx, pg, app, 150*time.Millisecond, 100*time.Millisecond) })

	w := newWorkload(rd, 7, 500, 8, false)
	for rd.streamLen(t) < 10_000 {
		for range 200 {
			w.cycle(t)
		}
	}
	stopChaos()
	wg.Wait()
	if chaosErr != nil {
		t.Fatalf("chaos: %v", chaosErr)
	}
	total := rd.streamLen(t)
	testutil.Eventually(t, 60*time.Second, "the mirror to catch up", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == total
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	ledgerMatches(t, pg, rd.entries(t))
	sameLeases(t, rd, pg)
	retries := promtest.ToFloat64(m.MetricsRetries())
	t.Logf("%d events, %d outages, %v retries, %v replays", total, cuts, retries, promtest.ToFloat64(m.MetricsDuplicates()))
	if cuts < 3 || retries == 0 {
		t.Fatalf("%d outages, %v retries: the mirror never met a failing Postgres", cuts, retries)
	}
}

func TestKilledBetweenCommitAndAckAppliesOnce(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	w := newWorkload(rd, 3, 20, 4, false)
	for range 400 {
		w.step(t)
	}
	total := rd.streamLen(t)

	// mirror A dies after committing its second batch, before XACK
	kill := errors.New("killed")
	var batches atomic.Int32
	a := mirror(pg.pool, rd, pgaudit.WithConsumer("a"), pgaudit.WithBatchSize(20), pgaudit.WithTrimInterval(-1),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithAfterCommit(func(int) error {
			if batches.Add(1) == 2 {
				return kill
			}
			return nil
		}))
	if err := a.Run(ctx); !errors.Is(err, kill) || !strings.Contains(err.Error(), "stopped after commit") {
		t.Fatalf("Run = %v, want the hook's error", err)
	}
	committed := pg.count(t, "SELECT count(*) FROM lock_events")
	pending, err := rd.client.XPending(ctx, rd.store.Layout().StreamKey(0), pgaudit.DefaultGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	if committed == 0 || committed == total {
		t.Fatalf("%d of %d events committed before the kill", committed, total)
	}

	// A holds the batch it committed and the one it had read ahead
	pendingA := 0
	for p := range rd.store.Layout().Partitions() {
		x, err := rd.client.XPending(ctx, rd.store.Layout().StreamKey(p), pgaudit.DefaultGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		pendingA += int(x.Consumers["a"])
	}
	if pendingA == 0 {
		t.Fatal("A left nothing pending")
	}

	// mirror B, a consumer of its own, applies what A never read and, once
	// A's entries are idle, claims and applies them (again, for the
	// committed batch): the ledger stays exact
	b := mirror(pg.pool, rd, pgaudit.WithConsumer("b"), pgaudit.WithClaimIdle(time.Minute), pgaudit.WithTrimInterval(-1),
		pgaudit.WithBatchSize(3))
	drain(t, b)
	if got := pg.count(t, "SELECT count(*) FROM lock_events"); got < total-pendingA || got >= total+1 {
		t.Fatalf("after B: %d ledger rows, want all %d but (some of) A's %d pending", got, total, pendingA)
	}
	left, _ := rd.client.XPending(ctx, rd.store.Layout().StreamKey(0), pgaudit.DefaultGroup).Result()
	if left.Count == 0 && pending.Count > 0 {
		t.Fatal("B claimed A's entries before they were idle")
	}
	rd.tick(time.Minute + time.Millisecond)
	drain(t, b)
	for p := range rd.store.Layout().Partitions() {
		x, err := rd.client.XPending(ctx, rd.store.Layout().StreamKey(p), pgaudit.DefaultGroup).Result()
		if err != nil || x.Count != 0 {
			t.Fatalf("partition %d: %d entries still pending (%v)", p, x.Count, err)
		}
	}
	if promtest.ToFloat64(b.MetricsClaimed()) == 0 || promtest.ToFloat64(b.MetricsDuplicates()) == 0 {
		t.Fatalf("claimed %v, replayed %v: B never claimed A's committed batch",
			promtest.ToFloat64(b.MetricsClaimed()), promtest.ToFloat64(b.MetricsDuplicates()))
	}
	ledgerMatches(t, pg, rd.entries(t))
	sameLeases(t, rd, pg)
}

func TestRestartedConsumerAppliesItsOwnPendingFirst(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	w := newWorkload(rd, 5, 10, 3, false)
	for range 200 {
		w.step(t)
	}
	kill := errors.New("killed")
	a := mirror(pg.pool, rd, pgaudit.WithConsumer("a"), pgaudit.WithBatchSize(10), pgaudit.WithTrimInterval(-1),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithAfterCommit(func(int) error { return kill }))
	if err := a.Run(context.Background()); !errors.Is(err, kill) {
		t.Fatalf("Run = %v", err)
	}
	// the same consumer again, in Run: its pending entries first, at once
	again := mirror(pg.pool, rd, pgaudit.WithConsumer("a"), pgaudit.WithTrimInterval(-1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- again.Run(ctx) }()
	total := rd.streamLen(t)
	testutil.Eventually(t, 10*time.Second, "the restarted mirror to catch up", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == total && promtest.ToFloat64(again.MetricsDuplicates()) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ledgerMatches(t, pg, rd.entries(t))
	sameLeases(t, rd, pg)
}

func TestTwoMirrorsRacingApplyEachEventOnce(t *testing.T) {
	pg, rd := newDB(t), newReal(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// a claim idle time so short that each mirror steals entries the other
	// is still applying
	var mirrors []*pgaudit.Mirror
	done := make(chan error, 2)
	for _, name := range []string{"m1", "m2"} {
		m := mirror(pg.pool, rd, pgaudit.WithConsumer(name), pgaudit.WithBatchSize(50),
			pgaudit.WithClaimIdle(2*time.Millisecond), pgaudit.WithTrimInterval(-1))
		mirrors = append(mirrors, m)
		go func() { done <- m.Run(ctx) }()
	}
	w := newWorkload(rd, 11, 60, 6, false)
	for range 4000 {
		w.step(t)
	}
	total := rd.streamLen(t)
	testutil.Eventually(t, 60*time.Second, "the mirrors to catch up", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == total
	})
	cancel()
	for range mirrors {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ledgerMatches(t, pg, rd.entries(t))
	sameLeases(t, rd, pg)
	var claimed, dups float64
	for _, m := range mirrors {
		claimed += promtest.ToFloat64(m.MetricsClaimed())
		dups += promtest.ToFloat64(m.MetricsDuplicates())
	}
	t.Logf("%d events; %v claimed, %v replayed", total, claimed, dups)
	if claimed == 0 {
		t.Fatal("the mirrors never claimed each other's entries")
	}
}
