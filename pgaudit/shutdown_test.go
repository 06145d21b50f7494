package pgaudit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// lockTable holds an ACCESS EXCLUSIVE lock on table until the returned
// function is called: every statement of the mirror on it waits (a
// Postgres that stalls, not one that fails).
func (e *pgEnv) lockTable(t *testing.T, table string) (release func()) {
	t.Helper()
	ctx := context.Background()
	c, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			_ = tx.Rollback(ctx)
			c.Release()
		}
	}
	t.Cleanup(release)
	return release
}

// waitingOnLock reports whether a connection of application app waits for
// a lock.
func (e *pgEnv) waitingOnLock(t *testing.T, app string) bool {
	return e.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2
		AND wait_event_type = 'Lock'`, e.Name, app) > 0
}

// Issue 12 item 11: a mirror stopped while a batch waits on Postgres kept
// waiting for the apply timeout (30 s) instead of the drain timeout.
func TestStopWithABatchStuckInPostgresEndsAtTheDrainTimeout(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	const app = "lockcoord-mirror-stuck"
	var logs syncBuffer
	m := mirror(pg.newPool(t, app), rd, pgaudit.WithConsumer("a"), pgaudit.WithDrainTimeout(300*time.Millisecond),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithLogger(zerolog.New(&logs))) // the apply timeout stays 30 s
	release := pg.lockTable(t, "lock_events")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	testutil.Eventually(t, 10*time.Second, "the batch to wait on the lock", func() bool { return pg.waitingOnLock(t, app) })
	start := time.Now()
	cancel()
	if err := <-done; err != nil { // the table is still locked: the drain timeout, not the stall, ended Run
		t.Fatal(err)
	}
	took := time.Since(start)
	release()
	if !strings.Contains(logs.String(), `"cause":"the drain timeout passed"`) {
		t.Fatalf("Run stopped %v after the stop without saying the drain timeout passed:\n%s", took, logs.String())
	}
	t.Logf("Run returned %v after its context ended (drain timeout 300ms, apply timeout 30s)", took)
	x, err := rd.client.XPending(context.Background(), rd.store.Layout().StreamKey(rd.store.Layout().Partition(coordinator.Plan("1"))), m.Group()).Result()
	if err != nil || x.Count != 1 {
		t.Fatalf("pending %+v, %v; want the entry still pending", x, err)
	}
	// Drain gives up the same way once its context is done
	release = pg.lockTable(t, "lock_events")
	dctx, dcancel := context.WithCancel(context.Background())
	drained := make(chan error, 1)
	go func() { _, err := m.Drain(dctx); drained <- err }()
	testutil.Eventually(t, 10*time.Second, "the batch to wait on the lock", func() bool { return pg.waitingOnLock(t, app) })
	dcancel()
	err = <-drained
	release()
	if err == nil || !strings.Contains(err.Error(), "gave up when the drain timeout passed") || !errorsIsPostgres(err) {
		t.Fatalf("Drain stopped during a stall: %v", err)
	}
	drain(t, m)
	sameLeases(t, rd, pg)
}

func errorsIsPostgres(err error) bool { return errors.Is(err, pgaudit.ErrPostgres) }
