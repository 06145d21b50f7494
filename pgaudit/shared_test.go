package pgaudit_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// sharedAcquire takes r shared for owner, capped at permits, with meta.
func (e *redisEnv) sharedAcquire(t testing.TB, r coordinator.Resource, owner string, ttl time.Duration, permits int, meta string) coordinator.Lease {
	t.Helper()
	q := e.req(r, owner, ttl)
	q.Mode, q.Permits, q.Meta = coordinator.ModeShared, permits, meta
	l, err := e.store.Acquire(context.Background(), q)
	if err != nil {
		t.Fatalf("shared acquire %s by %s: %v", r, owner, err)
	}
	return l
}

// TestMirrorSharedHolders: the locks mirror keeps one row per (resource,
// owner) with its mode, cap and metadata; the ledger records them with
// each event; a holder's release removes its row alone, whatever the
// order of the owners' events in a batch; an upgrade makes the row
// exclusive; an exclusive holder replaces the rows of earlier holders.
func TestMirrorSharedHolders(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	m := mirror(pg.pool, rd)
	r := coordinator.Project("apollo")
	rd.sharedAcquire(t, r, "t1", time.Minute, 3, "plan 1")
	rd.sharedAcquire(t, r, "t2", time.Minute, 0, "")
	rd.sharedAcquire(t, r, "t3", time.Minute, 0, "plan 3")
	if err := rd.release(t, r, "t1", false); err != nil { // the first holder leaves: the others stay
		t.Fatal(err)
	}
	drain(t, m)
	sameLeases(t, rd, pg)
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE mode = 'shared' AND cap = 3"); n != 2 {
		t.Fatalf("%d shared rows with cap 3, want 2", n)
	}
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE owner_id = 't3' AND meta = 'plan 3'"); n != 1 {
		t.Fatal("t3's row lacks its metadata")
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE mode = 'shared' AND cap = 3"); n != 4 {
		t.Fatalf("%d ledger rows say shared, cap 3; want the 4 events", n)
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE meta = 'plan 1'"); n != 2 {
		t.Fatalf("%d ledger rows carry t1's metadata, want 2", n)
	}
	// t2 leaves, t3 upgrades: one exclusive row
	if err := rd.release(t, r, "t2", false); err != nil {
		t.Fatal(err)
	}
	rd.mustAcquire(t, r, "t3", time.Minute)
	drain(t, m)
	sameLeases(t, rd, pg)
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE owner_id = 't3' AND mode = 'exclusive' AND cap = 0 AND hold_count = 2"); n != 1 {
		t.Fatal("the upgraded row is not exclusive")
	}
	// an exclusive event replaces the rows of holders whose leases ended
	// without an event
	p := coordinator.Plan("p")
	rd.sharedAcquire(t, p, "dead", time.Second, 0, "")
	drain(t, m)
	rd.advance(2 * time.Second)
	rd.mustAcquire(t, p, "w", time.Minute)
	drain(t, m)
	sameLeases(t, rd, pg)
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE owner_id = 'dead'"); n != 0 {
		t.Fatal("an exclusive hold left the row of an earlier holder")
	}
	// the exclusive ledger rows carry no mode
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE resource_id = 'p' AND owner_id = 'w' AND mode IS NULL AND cap IS NULL"); n != 1 {
		t.Fatal("an exclusive event has a mode in the ledger")
	}
}

// TestCleanupPerHolder: cleanup and diagnostics count stale holds per
// holder: of a shared resource, the holder that expired is stale, the
// live one is not, though its fields stay in the hash until a script
// writes it; diagnostics count every live holder as a lease held.
func TestCleanupPerHolder(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)
	r := coordinator.Plan("shared-stale")
	rd.sharedAcquire(t, r, "dead", time.Second, 0, "")
	rd.sharedAcquire(t, r, "live", time.Hour, 0, "")
	rd.sharedAcquire(t, coordinator.Plan("other"), "dead", time.Second, 0, "")
	drain(t, m)
	rd.tick(2 * time.Second) // TIME moves on, the hash keeps the dead holder's fields
	rep, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.StaleCount != 2 || rep.LeasesHeld != 1 || rep.MissingCount != 0 {
		t.Fatalf("report: %d stale, %d held, %d missing; want 2 stale (the dead holder's), 1 held, 0 missing",
			rep.StaleCount, rep.LeasesHeld, rep.MissingCount)
	}
	removed, err := m.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0].Owner != "dead" || removed[1].Owner != "dead" || removed[0].Mode != coordinator.ModeShared {
		t.Fatalf("cleanup removed %+v, want the dead holder's two shared rows", removed)
	}
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE owner_id = 'live'"); n != 1 {
		t.Fatal("cleanup removed the live holder's row")
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired' AND owner_id = 'dead' AND mode = 'shared'"); n != 2 {
		t.Fatal("the expired holds are not in the ledger as shared")
	}
}
