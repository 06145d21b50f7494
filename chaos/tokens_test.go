package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestTokensNeverGoBackward is scenario 3: Redis loses every key again
// and again — kill -9 and restart without persistence, FLUSHALL — while
// the pgaudit mirror copies the outbox into the Postgres ledger. After
// each loss, the first token of every resource must be above every token
// issued for it before: above the highest in the ledger, and above the
// highest any client saw.
func TestTokensNeverGoBackward(t *testing.T) {
	parallel(t)
	var (
		restarts = size(2, 20)
		flushes  = size(2, 20)
		nRes     = 8
	)
	pool := pgPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), size(2*time.Minute, 20*time.Minute))
	defer cancel()
	if _, err := pgaudit.Migrate(ctx, pool, nopLogger()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	w := newWorld(t, worldConfig{client: clientOptions(2 * time.Second), store: []redisstore.Option{redisstore.WithPartitions(4)}})

	// the mirror, in the background for the whole test
	mirrorClient := redis.NewClient(&redis.Options{Addr: w.srv.Addr, DialTimeout: time.Second, ReadTimeout: 3 * time.Second})
	t.Cleanup(func() { _ = mirrorClient.Close() })
	mirror := pgaudit.NewMirror(pool, w.store(mirrorClient), pgaudit.WithBlock(20*time.Millisecond),
		pgaudit.WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond), pgaudit.WithCleanupInterval(-1))
	mctx, mstop := context.WithCancel(ctx)
	var mwg sync.WaitGroup
	mwg.Go(func() {
		if err := mirror.Run(mctx); err != nil {
			t.Errorf("mirror: %v", err)
		}
	})
	defer func() { mstop(); mwg.Wait() }()

	a, b := w.worker(0), w.worker(1)
	rs := resources("tokens", nRes)
	seen := map[coordinator.Resource]uint64{} // highest token any client saw
	note := func(r coordinator.Resource, l coordinator.Lease) {
		seen[r] = max(seen[r], l.Token)
	}
	ttl := coordinator.TTL(time.Minute) // leases outlive the round: the loss ends them

	// workload of one round: a hand-off, a re-entry, and leases left held
	workload := func(round int) {
		for i, r := range rs {
			l, err := a.c.Acquire(ctx, r, a.owner, ttl)
			if err != nil {
				t.Fatalf("round %d: acquire %s: %v", round, r, err)
			}
			note(r, l)
			if l, err = a.c.Acquire(ctx, r, a.owner, ttl); err != nil {
				t.Fatalf("round %d: re-enter %s: %v", round, r, err)
			}
			note(r, l)
			if _, err := a.c.Release(ctx, r, a.owner); err != nil {
				t.Fatal(err)
			}
			if _, err := a.c.Release(ctx, r, a.owner); err != nil {
				t.Fatal(err)
			}
			l, err = b.c.Acquire(ctx, r, b.owner, ttl)
			if err != nil {
				t.Fatalf("round %d: acquire %s by b: %v", round, r, err)
			}
			note(r, l)
			if i%2 == 0 { // half the leases are lost with Redis's data
				if _, err := b.c.Release(ctx, r, b.owner); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	ledgerMax := func(r coordinator.Resource) (uint64, error) {
		var m *int64
		err := pool.QueryRow(ctx, `SELECT max(token) FROM lock_events WHERE resource_type = $1 AND resource_id = $2`,
			r.Type, r.ID).Scan(&m)
		if err != nil || m == nil {
			return 0, err
		}
		return uint64(*m), nil
	}
	// wait until the ledger has every token the clients saw
	caughtUp := func(round int) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for _, r := range rs {
			var got uint64
			err := testutil.Poll(cctx, 10*time.Millisecond, func() (err error) {
				if got, err = ledgerMax(r); err != nil {
					return testutil.Permanent(fmt.Errorf("ledger: %w", err))
				}
				if got < seen[r] {
					return testutil.ErrNotYet
				}
				return nil
			})
			if err != nil && cctx.Err() == nil {
				t.Fatal(err)
			}
			if err != nil {
				t.Fatalf("round %d: the ledger's highest token of %s is %d, the clients saw %d", round, r, got, seen[r])
			}
		}
	}

	regressions, checked := 0, 0
	var margins []time.Duration
	rounds := restarts + flushes
	for round := range rounds {
		workload(round)
		caughtUp(round)
		ledger := map[coordinator.Resource]uint64{}
		for _, r := range rs {
			m, err := ledgerMax(r)
			if err != nil {
				t.Fatal(err)
			}
			ledger[r] = m
		}
		how := "restart"
		if round%2 == 1 && flushes > 0 {
			how = "flushall"
			if err := w.flush(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := w.kill(50*time.Millisecond, false); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			l, err := a.c.Acquire(ctx, r, a.owner, ttl)
			if err != nil {
				t.Fatalf("round %d (%s): first acquire of %s: %v", round, how, r, err)
			}
			checked++
			before := max(ledger[r], seen[r])
			if l.Token <= before {
				regressions++
				t.Errorf("round %d (%s): first token of %s after the loss is %d, not above %d (ledger %d, clients %d)",
					round, how, r, l.Token, before, ledger[r], seen[r])
			}
			margins = append(margins, time.Duration(l.Token-min(l.Token, before))*time.Microsecond)
			note(r, l)
			if _, err := a.c.Release(ctx, r, a.owner); err != nil {
				t.Fatal(err)
			}
		}
	}
	caughtUp(rounds)
	var events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM lock_events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	rep := w.check(time.Minute, 10*time.Second)
	ops, _ := rep.Ops()
	report(t, "tokens: %d restarts without persistence and %d FLUSHALLs, %d resources on 4 partitions: %d first tokens checked against the ledger (%d events) and the clients, %d regressions; margin above the last token p50 %v min %v; history of %d operations linearizable: %v",
		restarts, flushes, nRes, checked, events, regressions, percentile(margins, 50), percentile(margins, 0), ops, rep.OK())
	if checked != rounds*nRes {
		t.Errorf("checked %d first tokens, want %d", checked, rounds*nRes)
	}
}
