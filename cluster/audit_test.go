package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// TestMirrorOnCluster: the audit mirror reads the 16 partition streams,
// spread over the three masters, each from the master that owns its slot
// (one XREADGROUP per partition: a multi-stream read would be CROSSSLOT),
// applies every event, and diagnostics, cleanup, pending-entry claims and
// trimming work across the masters.
func TestMirrorOnCluster(t *testing.T) {
	cl := env.NeedCluster(t)
	ctx := t.Context()
	pool := auditDB(t)
	cc := clusterClient(t)
	s := newStore(t, cc)
	c := coordinator.New(s)
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	// every kind of event in every partition: acquired, reentered,
	// renewed, decremented, released, forced
	rs := resourcePerPartition(s, "plan")
	for i, r := range rs {
		need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Hour)))
		need(t)(c.Acquire(ctx, r, "w1"))
		need(t)(c.Renew(ctx, r, "w1"))
		need(t)(c.Release(ctx, r, "w1"))
		switch i % 3 {
		case 0:
			need(t)(c.Release(ctx, r, "w1"))
		case 1:
			need(t)(s.ForceRelease(ctx, r, fmt.Sprint("force-", i)))
		}
	}
	per, total := streamEntries(t, cc, s)
	for p, n := range per {
		if n == 0 {
			t.Fatalf("partition %d has no events", p)
		}
	}

	// entries a crashed consumer read and never acknowledged, in every
	// partition: the mirror claims them (XAUTOCLAIM, per partition)
	const group = "lockcoord-mirror"
	for p := range s.Layout().Partitions() {
		if err := cc.XGroupCreateMkStream(ctx, s.Layout().StreamKey(p), group, "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := cc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "crashed",
			Streams: []string{s.Layout().StreamKey(p), ">"}, Count: 1, Block: -1}).Err(); err != nil {
			t.Fatalf("XREADGROUP partition %d: %v", p, err)
		}
	}
	m := pgaudit.NewMirror(pool, s, pgaudit.WithGroup(group), pgaudit.WithConsumer("mirror-1"),
		pgaudit.WithBatchSize(7), pgaudit.WithClaimIdle(time.Millisecond), pgaudit.WithTrimInterval(-1))
	n, err := m.Drain(ctx)
	if err != nil {
		t.Fatalf("Drain on Cluster: %v", err)
	}
	if int64(n) != total {
		t.Fatalf("Drain handled %d entries, the streams hold %d", n, total)
	}
	if got := countRows(t, pool, `SELECT count(*) FROM lock_events`); int64(got) != total {
		t.Fatalf("ledger has %d events, the streams %d", got, total)
	}
	held := mirrorMatchesRedis(t, cc, s, pool)
	if held != len(rs)/3 {
		t.Fatalf("%d leases held, want %d", held, len(rs)/3)
	}

	// the group state lives with each stream, on the master of its slot:
	// read it there, without redirection
	owner := masterOfSlot(t, ctx, cc)
	for p := range s.Layout().Partitions() {
		slot, err := cc.ClusterKeySlot(ctx, s.Layout().StreamKey(p)).Result()
		if err != nil {
			t.Fatal(err)
		}
		node := cl.Node(owner[slot]).Client(t)
		groups, err := node.XInfoGroups(ctx, s.Layout().StreamKey(p)).Result()
		last, lerr := node.XInfoStream(ctx, s.Layout().StreamKey(p)).Result()
		if err != nil || lerr != nil || len(groups) != 1 {
			t.Fatalf("partition %d on %s: XINFO %v, %v, %v", p, owner[slot], groups, err, lerr)
		}
		if g := groups[0]; g.Pending != 0 || g.LastDeliveredID != last.LastGeneratedID {
			t.Fatalf("partition %d on %s: group %+v, stream ends at %s", p, owner[slot], g, last.LastGeneratedID)
		}
	}

	// diagnostics scan every master and read every stream's lag
	rep, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatalf("Diagnose on Cluster: %v", err)
	}
	if rep.LeasesHeld != held || rep.RowsMirrored != held || rep.MissingCount != 0 || rep.StaleCount != 0 ||
		rep.Lag.Entries != total || rep.Lag.Undelivered != 0 || rep.Lag.Pending != 0 {
		t.Fatalf("Diagnose on Cluster: %+v", rep)
	}

	// stale leases on every master: holders that died, leases expired in
	// Redis without an event
	dead := resourcePerPartition(s, "dead")
	for _, r := range dead {
		need(t)(c.Acquire(ctx, r, "dying", coordinator.TTL(50*time.Millisecond)))
	}
	if _, err := m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range dead {
		testutil.Eventually(t, 10*time.Second, r.String()+" to expire", func() bool {
			_, err := s.Inspect(ctx, r)
			if err != nil && !errors.Is(err, coordinator.ErrNotHeld) {
				t.Fatal(err)
			}
			return err != nil
		})
	}
	rep, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{Limit: 100})
	if err != nil || rep.StaleCount != len(dead) {
		t.Fatalf("Diagnose: %d stale leases, %v; want %d", rep.StaleCount, err, len(dead))
	}
	removed, err := m.Cleanup(ctx)
	if err != nil || len(removed) != len(dead) {
		t.Fatalf("Cleanup on Cluster removed %d rows, %v; want %d", len(removed), err, len(dead))
	}
	for _, row := range removed {
		if !slices.Contains(dead, row.Resource) || row.Owner != "dying" {
			t.Fatalf("Cleanup removed %+v", row)
		}
	}
	mirrorMatchesRedis(t, cc, s, pool)

	// Run follows new events on every partition, then trims what it
	// acknowledged
	run := pgaudit.NewMirror(pool, s, pgaudit.WithGroup(group), pgaudit.WithConsumer("mirror-2"),
		pgaudit.WithBlock(50*time.Millisecond), pgaudit.WithTrimInterval(10*time.Millisecond))
	want := countRows(t, pool, `SELECT count(*) FROM lock_events`)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run.Run(runCtx) }()
	late := resourcePerPartition(s, "late")
	for _, r := range late {
		need(t)(c.Acquire(ctx, r, "w2"))
	}
	want += len(late)
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	defer pcancel()
	err = testutil.Poll(pctx, 20*time.Millisecond, func() error {
		select {
		case err := <-done:
			return testutil.Permanent(fmt.Errorf("Run ended: %w", err))
		default:
		}
		if countRows(t, pool, `SELECT count(*) FROM lock_events`) < want || trimmed(t, cc, s.Layout()) > 0 {
			return testutil.ErrNotYet
		}
		return nil
	})
	if err != nil && pctx.Err() == nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("Run did not apply and trim every partition's events: %d of %d events, %d entries left",
			countRows(t, pool, `SELECT count(*) FROM lock_events`), want, trimmed(t, cc, s.Layout()))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mirrorMatchesRedis(t, cc, s, pool)

	// ReleaseAll across masters, mirrored
	if n, err := c.ReleaseAll(ctx, "w2"); err != nil || n != len(late) {
		t.Fatalf("ReleaseAll = %d, %v", n, err)
	}
	if _, err := m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM locks WHERE owner_id = 'w2'`); n != 0 {
		t.Fatalf("%d rows of w2 left after ReleaseAll", n)
	}
}

// trimmed returns the entries left in the streams of s.
func trimmed(t testing.TB, client redis.UniversalClient, s interface {
	Partitions() int
	StreamKey(int) string
}) int64 {
	t.Helper()
	var left int64
	for p := range s.Partitions() {
		n, err := client.XLen(context.Background(), s.StreamKey(p)).Result()
		if err != nil {
			t.Fatal(err)
		}
		left += n
	}
	return left
}
