package pgaudit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// expireDue runs the store's ExpireDue on every partition and returns
// the events it appended.
func expireDue(t *testing.T, rd *redisEnv) int {
	t.Helper()
	n := 0
	for p := range rd.store.Layout().Partitions() {
		k, err := rd.store.ExpireDue(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// TestExpiredEventsAreOneLedgerRow: an "expired" event from Redis ends
// the mirror's row, and an expiry is one ledger row whether Cleanup or
// the event records it first, or both.
func TestExpiredEventsAreOneLedgerRow(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)
	expiredRows := func(l coordinator.Lease) int {
		return pg.count(t, `SELECT count(*) FROM lock_events WHERE event = 'expired'
			AND resource_type = $1 AND resource_id = $2 AND token = $3 AND owner_id = $4`,
			l.Resource.Type, l.Resource.ID, int64(l.Token), l.Owner)
	}

	// the event first, then Cleanup: it finds nothing left to do
	a := rd.mustAcquire(t, coordinator.Plan("a"), "w1", 5*time.Second)
	keep := rd.mustAcquire(t, coordinator.Plan("keep"), "w1", time.Minute)
	drain(t, m)
	rd.advance(6 * time.Second)
	if n := expireDue(t, rd); n != 1 {
		t.Fatalf("ExpireDue appended %d events, want 1", n)
	}
	drain(t, m)
	if n := expiredRows(a); n != 1 {
		t.Fatalf("%d expired rows for %s after its event, want 1", n, a.Resource)
	}
	if removed, err := m.Cleanup(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("Cleanup after the event = %v, %v", removed, err)
	}
	sameLeases(t, rd, pg)

	// Cleanup first, then the event: still one row
	b := rd.mustAcquire(t, coordinator.Plan("b"), "w2", 5*time.Second)
	drain(t, m)
	rd.advance(6 * time.Second)
	if removed, err := m.Cleanup(ctx); err != nil || len(removed) != 1 {
		t.Fatalf("Cleanup = %v, %v, want b's row", removed, err)
	}
	if n := expireDue(t, rd); n != 1 {
		t.Fatalf("ExpireDue appended %d events, want 1", n)
	}
	drain(t, m)
	for _, l := range []coordinator.Lease{a, b} {
		if n := expiredRows(l); n != 1 {
			t.Errorf("%d expired rows for %s, want 1", n, l.Resource)
		}
	}
	if n := pg.count(t, `SELECT count(*) FROM lock_events WHERE event = 'expired'`); n != 2 {
		t.Errorf("%d expired rows in all, want 2 (keep %s lives)", n, keep.Resource)
	}
	if n := pg.count(t, `SELECT count(*) FROM lock_dead_letters`); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	sameLeases(t, rd, pg)
}

// TestMirrorSweepsExpiries: with WithExpirySweep, Run itself turns an
// expired lease into its event, so the mirror's row ends without a
// Cleanup; a failing sweep is logged and retried.
func TestMirrorSweepsExpiries(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	var logs syncBuffer
	m := mirror(pg.pool, rd, pgaudit.WithExpirySweep(time.Millisecond), pgaudit.WithBlock(10*time.Millisecond),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithLogger(zerolog.New(&logs)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	l := rd.mustAcquire(t, coordinator.Plan("swept"), "w1", 5*time.Second)
	testutil.Eventually(t, 10*time.Second, "the row", func() bool { return pg.count(t, "SELECT count(*) FROM locks") == 1 })
	idx := rd.store.Layout().ExpiryKey(rd.store.Layout().Partition(l.Resource))
	member, err := rd.client.ZRange(ctx, idx, 0, 0).Result()
	if err != nil || len(member) != 1 {
		t.Fatalf("expiry index %v, %v", member, err)
	}
	if err := rd.client.Rename(ctx, idx, idx+"-aside").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rd.client.Set(ctx, idx, "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a failed sweep", func() bool { return strings.Contains(logs.String(), "expiry sweep failed") })
	if err := rd.client.Rename(ctx, idx+"-aside", idx).Err(); err != nil {
		t.Fatal(err)
	}
	rd.advance(6 * time.Second)
	testutil.Eventually(t, 10*time.Second, "the expiry", func() bool {
		return pg.count(t, "SELECT count(*) FROM locks") == 0 &&
			pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired'") == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
