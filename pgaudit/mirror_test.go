package pgaudit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
)

func TestEveryEventKindLandsOnce(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := mirror(pg.pool, rd, pgaudit.WithMetrics(reg), pgaudit.WithTrimInterval(-1))

	a, b, c := coordinator.Plan("1"), coordinator.Project("2"), coordinator.Resource{Type: "job", ID: "x/3"}
	rd.mustAcquire(t, a, "w1", time.Minute) // acquired
	rd.mustAcquire(t, a, "w1", time.Minute) // reentered
	rd.advance(time.Second)
	if err := rd.renew(t, a, "w1", time.Minute); err != nil { // renewed
		t.Fatal(err)
	}
	if err := rd.release(t, a, "w1", false); err != nil { // decremented
		t.Fatal(err)
	}
	if err := rd.release(t, a, "w1", false); err != nil { // released
		t.Fatal(err)
	}
	rd.mustAcquire(t, b, "w2", time.Minute)
	if _, err := rd.store.ForceReleaseBy(ctx, b, "alice (INC-7)", "admin-1"); err != nil { // forced
		t.Fatal(err)
	}
	rd.mustAcquire(t, c, "w3", 10*time.Second)
	want := rd.entries(t)
	if len(want) != 8 {
		t.Fatalf("the scripts wrote %d events, want 8", len(want))
	}
	if n := drain(t, m); n != 8 {
		t.Fatalf("Drain handled %d entries, want 8", n)
	}
	ledgerMatches(t, pg, want)
	sameLeases(t, rd, pg)
	for _, kind := range []string{"acquired", "reentered", "renewed", "decremented", "released", "forced"} {
		if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE event = $1", kind); n == 0 {
			t.Errorf("no %s event in the ledger", kind)
		}
	}
	// the operator is in the ledger; every other row names none
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'forced' AND forced_by = 'alice (INC-7)'"); n != 1 {
		t.Errorf("%d forced rows name the operator, want 1", n)
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE event <> 'forced' AND forced_by IS NOT NULL"); n != 0 {
		t.Errorf("%d rows of other events name an operator", n)
	}
	if got := testutil.ToFloat64(m.MetricsApplied("acquired")); got != 3 {
		t.Errorf("applied{acquired} = %v, want 3", got)
	}

	// nothing new: nothing done
	if n := drain(t, m); n != 0 {
		t.Fatalf("second Drain handled %d entries", n)
	}
	// every entry delivered again (the group made anew): replays are no-ops
	for p := range rd.store.Layout().Partitions() {
		if err := rd.client.XGroupDestroy(ctx, rd.store.Layout().StreamKey(p), m.Group()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := drain(t, m); n != 8 {
		t.Fatalf("Drain after rewinding handled %d entries, want 8", n)
	}
	ledgerMatches(t, pg, want)
	sameLeases(t, rd, pg)
	if got := testutil.ToFloat64(m.MetricsDuplicates()); got != 8 {
		t.Errorf("duplicates = %v, want 8", got)
	}

	// the lease on c dies without a release: cleanup records it as expired, once
	rd.advance(11 * time.Second)
	removed, err := m.Cleanup(ctx)
	if err != nil || len(removed) != 1 || removed[0].Resource != c || removed[0].Owner != "w3" {
		t.Fatalf("Cleanup = %+v, %v; want the lease on %s", removed, err, c)
	}
	if removed, err := m.Cleanup(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("second Cleanup = %+v, %v", removed, err)
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired' AND resource_type = 'job' AND resource_id = 'x/3'"); n != 1 {
		t.Fatalf("%d expired events for %s, want 1", n, c)
	}
	sameLeases(t, rd, pg)
	if got := testutil.ToFloat64(m.MetricsExpired()); got != 1 {
		t.Errorf("expired = %v, want 1", got)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestMirrorOptionsAreValidated(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	bad := []pgaudit.MirrorOption{
		pgaudit.WithGroup(""), pgaudit.WithConsumer(""), pgaudit.WithBatchSize(0),
		pgaudit.WithBatchSize(pgaudit.MaxBatchSize + 1), pgaudit.WithBlock(0), pgaudit.WithClaimIdle(0),
		pgaudit.WithRetryBackoff(0, time.Second), pgaudit.WithRetryBackoff(time.Second, time.Millisecond),
		pgaudit.WithApplyTimeout(-1), pgaudit.WithDrainTimeout(0), pgaudit.WithMetrics(nil),
	}
	for i, o := range bad {
		m := pgaudit.NewMirror(pg.pool, rd.store, o)
		if err := m.Run(ctx); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("option %d: Run = %v, want ErrInvalid", i, err)
		}
		if _, err := m.Drain(ctx); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("option %d: Drain = %v, want ErrInvalid", i, err)
		}
		if _, err := m.Cleanup(ctx); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("option %d: Cleanup = %v, want ErrInvalid", i, err)
		}
		if _, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{}); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("option %d: Diagnose = %v, want ErrInvalid", i, err)
		}
	}
	if err := pgaudit.NewMirror(nil, rd.store).Run(ctx); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("nil pool: %v", err)
	}
	if err := pgaudit.NewMirror(pg.pool, nil).Run(ctx); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("nil store: %v", err)
	}
	m := pgaudit.NewMirror(pg.pool, rd.store, nil, pgaudit.WithGroup("g"), pgaudit.WithConsumer("c"))
	if m.Group() != "g" || m.Consumer() != "c" {
		t.Errorf("Group, Consumer = %q, %q", m.Group(), m.Consumer())
	}
	if d := pgaudit.NewMirror(pg.pool, rd.store); d.Group() != pgaudit.DefaultGroup || d.Consumer() == "" ||
		d.Consumer() == pgaudit.NewMirror(pg.pool, rd.store).Consumer() {
		t.Errorf("default group %q, consumer %q: want the default group and a consumer name of its own", d.Group(), d.Consumer())
	}
}
