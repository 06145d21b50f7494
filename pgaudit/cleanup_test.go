package pgaudit_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
)

func TestCleanupRemovesOnlyDeadLeases(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)
	alive, dead, renewed, retaken, forced := coordinator.Plan("alive"), coordinator.Plan("dead"),
		coordinator.Plan("renewed"), coordinator.Project("retaken"), coordinator.Project("forced")
	rd.mustAcquire(t, alive, "w1", time.Minute)
	deadLease := rd.mustAcquire(t, dead, "w2", 5*time.Second)
	rd.mustAcquire(t, renewed, "w3", 5*time.Second)
	oldRetaken := rd.mustAcquire(t, retaken, "w4", 5*time.Second)
	rd.mustAcquire(t, forced, "w6", time.Minute)
	drain(t, m)

	// changes the mirror has not seen yet
	if err := rd.renew(t, renewed, "w3", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.store.ForceRelease(ctx, forced, "admin"); err != nil {
		t.Fatal(err)
	}
	rd.advance(6 * time.Second) // dead and retaken expire in Redis
	rd.mustAcquire(t, retaken, "w5", time.Minute)

	removed, err := m.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range removed {
		got = append(got, r.Resource.String())
	}
	slices.Sort(got)
	if want := []string{"plan/dead", "project/retaken"}; !slices.Equal(got, want) {
		t.Fatalf("Cleanup removed %v, want %v", got, want)
	}
	// the ledger says which leases expired, with their tokens
	for _, l := range []coordinator.Lease{deadLease, oldRetaken} {
		if n := pg.count(t, `SELECT count(*) FROM lock_events WHERE event = 'expired'
			AND resource_type = $1 AND resource_id = $2 AND token = $3 AND owner_id = $4`,
			l.Resource.Type, l.Resource.ID, int64(l.Token), l.Owner); n != 1 {
			t.Errorf("%d expired events for %s token %d", n, l.Resource, l.Token)
		}
	}
	for _, r := range removed {
		if r.Resource == dead && (r.Token != deadLease.Token || r.Owner != "w2" || r.Count != 1 ||
			!r.ExpiresAt.Equal(deadLease.ExpiresAt) || r.LastEventID == "") {
			t.Errorf("removed row %+v does not match the lease %+v", r, deadLease)
		}
	}
	// the renewed lease, the forced one (not expired yet) and the live one stay
	if rows := pg.count(t, "SELECT count(*) FROM locks"); rows != 3 {
		t.Fatalf("%d rows left, want 3", rows)
	}
	// what the mirror had not seen arrives: the mirror equals Redis
	drain(t, m)
	sameLeases(t, rd, pg)
	if removed, err := m.Cleanup(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("Cleanup after catching up = %v, %v", removed, err)
	}
}

func TestCleanupPagesThroughManyRows(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	m := mirror(pg.pool, rd, pgaudit.WithBatchSize(1000))
	const n = 2500 // more than a page
	for i := range n {
		rd.mustAcquire(t, coordinator.Resource{Type: "job", ID: "j" + itoa(i)}, "w", time.Second)
	}
	keep := coordinator.Resource{Type: "job", ID: "j7"}
	drain(t, m)
	rd.advance(2 * time.Second)
	rd.mustAcquire(t, keep, "w", time.Minute) // a later lease, not yet mirrored
	removed, err := m.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != n {
		t.Fatalf("removed %d rows, want %d", len(removed), n)
	}
	drain(t, m)
	sameLeases(t, rd, pg)
}

func TestLateEventsDoNotResurrectOrRewind(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd, pgaudit.WithBatchSize(1), pgaudit.WithClaimIdle(time.Minute), pgaudit.WithTrimInterval(-1))
	gone, kept := coordinator.Plan("gone"), coordinator.Plan("kept")
	pgone, pkept := rd.store.Layout().Partition(gone), rd.store.Layout().Partition(kept)
	for _, p := range []int{pgone, pkept} {
		if err := rd.client.XGroupCreateMkStream(ctx, rd.store.Layout().StreamKey(p), m.Group(), "0").Err(); err != nil && p == pgone {
			t.Fatal(err)
		}
	}
	// a consumer reads an entry and dies: it is applied only after the
	// later events of the same lease
	ghost := func(p int) string {
		t.Helper()
		res, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: m.Group(), Consumer: "ghost",
			Streams: []string{rd.store.Layout().StreamKey(p), ">"}, Count: 1, Block: -1}).Result()
		if err != nil || len(res[0].Messages) != 1 {
			t.Fatalf("ghost read: %v %v", res, err)
		}
		return res[0].Messages[0].Values["event"].(string)
	}

	// gone: acquired (late), renewed, released
	rd.mustAcquire(t, gone, "w1", time.Minute)
	if ev := ghost(pgone); ev != "acquired" {
		t.Fatalf("ghost took %s", ev)
	}
	if err := rd.renew(t, gone, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := rd.release(t, gone, "w1", false); err != nil {
		t.Fatal(err)
	}
	// kept: acquired, reentered (late), decremented, renewed
	rd.mustAcquire(t, kept, "w2", time.Minute)
	drain(t, m)
	rd.mustAcquire(t, kept, "w2", time.Minute)
	if ev := ghost(pkept); ev != "reentered" {
		t.Fatalf("ghost took %s", ev)
	}
	if err := rd.release(t, kept, "w2", false); err != nil {
		t.Fatal(err)
	}
	rd.advance(time.Second)
	if err := rd.renew(t, kept, "w2", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	sameLeases(t, rd, pg)

	rd.tick(time.Minute + time.Millisecond)
	if n := drain(t, m); n != 2 {
		t.Fatalf("claimed %d entries, want the ghost's 2", n)
	}
	sameLeases(t, rd, pg) // no row for gone; kept's count and expiry unchanged
	ledgerMatches(t, pg, rd.entries(t))
	var renewedAt, acquiredAt time.Time
	if err := pg.pool.QueryRow(ctx, "SELECT renewed_at, acquired_at FROM locks WHERE resource_id = 'kept'").
		Scan(&renewedAt, &acquiredAt); err != nil {
		t.Fatal(err)
	}
	if !renewedAt.After(acquiredAt) {
		t.Fatalf("renewed_at %v not after acquired_at %v", renewedAt, acquiredAt)
	}
}
