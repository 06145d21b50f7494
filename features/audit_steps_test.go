package features_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cucumber/godog"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// audit is the Postgres side of a scenario: a database of its own, made
// when a scenario first asks for the mirror and dropped after it.
type audit struct {
	db      *testpg.DB
	pool    *pgxpool.Pool
	mirror  *pgaudit.Mirror
	cleaned []pgaudit.Row
	report  pgaudit.Report
}

var errNoPostgres = godog.ErrPending

// mirrorHasDatabase creates, migrates and connects the scenario's database.
func (w *world) mirrorHasDatabase() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := testpg.Create(ctx, testpg.AdminURL())
	if errors.Is(err, testpg.ErrUnavailable) && !testutil.Required() {
		return fmt.Errorf("%w: %w", errNoPostgres, err)
	}
	if err != nil {
		return err
	}
	a := &audit{db: db}
	w.audit = a
	if a.pool, err = pgxpool.New(ctx, db.URL); err != nil {
		return err
	}
	if _, err := pgaudit.Migrate(ctx, a.pool, zerolog.Nop()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	a.mirror = pgaudit.NewMirror(a.pool, w.store)
	return nil
}

// dropAudit closes and drops the scenario's database, if it made one.
func (w *world) dropAudit() error {
	a := w.audit
	if a == nil {
		return nil
	}
	w.audit = nil
	if a.pool != nil {
		a.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.db.Drop(ctx)
}

func (w *world) needAudit() (*audit, error) {
	if w.audit == nil {
		return nil, fmt.Errorf("the scenario has no mirror database (Given the audit mirror has a database)")
	}
	return w.audit, nil
}

func (w *world) mirrorCatchesUp() error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.mirror.Drain(ctx)
	return err
}

func (w *world) mirrorShows(n int) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	var got int
	if err := a.pool.QueryRow(context.Background(), "SELECT count(*) FROM locks").Scan(&got); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("the mirror shows %d leases, want %d", got, n)
	}
	return nil
}

func (w *world) mirrorShowsHolder(t, id, owner string) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	var got string
	err = a.pool.QueryRow(context.Background(),
		"SELECT owner_id FROM locks WHERE resource_type = $1 AND resource_id = $2", t, id).Scan(&got)
	if err != nil {
		return fmt.Errorf("%s/%s in the mirror: %w", t, id, err)
	}
	if got != owner {
		return fmt.Errorf("the mirror shows %s/%s held by %q, want %q", t, id, got, owner)
	}
	return nil
}

func (w *world) mirrorLacks(t, id string) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	var n int
	err = a.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM locks WHERE resource_type = $1 AND resource_id = $2", t, id).Scan(&n)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("the mirror still shows %s/%s", t, id)
	}
	return nil
}

func (w *world) cleansUp() error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	a.cleaned, err = a.mirror.Cleanup(context.Background())
	return err
}

func (w *world) cleanupMoved(t, id, owner string) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	r := coordinator.Resource{Type: t, ID: id}
	if len(a.cleaned) != 1 || a.cleaned[0].Resource != r || a.cleaned[0].Owner != owner {
		return fmt.Errorf("cleanup removed %+v, want only %s of %q", a.cleaned, r, owner)
	}
	var n int
	err = a.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM lock_events WHERE event = 'expired' AND resource_type = $1 AND resource_id = $2 AND owner_id = $3",
		t, id, owner).Scan(&n)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%d expired rows in the ledger for %s, want 1", n, r)
	}
	return nil
}

func (w *world) cleanupMovedNothing() error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	if len(a.cleaned) != 0 {
		return fmt.Errorf("cleanup removed %+v, want nothing", a.cleaned)
	}
	return nil
}

func (w *world) diagnosticsRun() error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	a.report, err = a.mirror.Diagnose(context.Background(), pgaudit.DiagnoseOptions{})
	return err
}

func (w *world) reportsStale(n int) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	if a.report.StaleCount != n || len(a.report.Stale) != n {
		return fmt.Errorf("diagnostics report %d stale leases (%+v), want %d", a.report.StaleCount, a.report.Stale, n)
	}
	return nil
}

func (w *world) reportsStaleLease(t, id, owner string) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	r := coordinator.Resource{Type: t, ID: id}
	for _, row := range a.report.Stale {
		if row.Resource == r && row.Owner == owner {
			return nil
		}
	}
	return fmt.Errorf("diagnostics do not name %s of %q as stale: %+v", r, owner, a.report.Stale)
}

func (w *world) reportsHeld(held, missing int) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	if a.report.LeasesHeld != held || a.report.MissingCount != missing {
		return fmt.Errorf("diagnostics report %d held, %d missing; want %d, %d",
			a.report.LeasesHeld, a.report.MissingCount, held, missing)
	}
	return nil
}

func (w *world) reportHealth(verdict string, maxStale int) error {
	a, err := w.needAudit()
	if err != nil {
		return err
	}
	th := pgaudit.DefaultThresholds()
	th.MaxStale = maxStale
	healthy := a.report.Healthy(th)
	if healthy != (verdict == "healthy") {
		return fmt.Errorf("diagnostics healthy=%v at max %d stale, want %s (problems: %v)", healthy, maxStale, verdict, a.report.Problems(th))
	}
	if code := a.report.ExitCode(th); (code == pgaudit.ExitHealthy) != healthy {
		return fmt.Errorf("exit code %d for healthy=%v", code, healthy)
	}
	return nil
}

func initAuditSteps(sc *godog.ScenarioContext, w *world) {
	sc.Given(step(`the audit mirror has a database`), w.mirrorHasDatabase)
	sc.Step(step(`the mirror catches up`), w.mirrorCatchesUp)
	sc.Step(step(`the mirror cleans up at startup`), w.cleansUp)
	sc.Step(step(`the diagnostics run`), w.diagnosticsRun)
	sc.Then(step(`the mirror shows (\d+) leases?`), w.mirrorShows)
	sc.Then(step(`the mirror shows {type} {q} held by worker {q}`), w.mirrorShowsHolder)
	sc.Then(step(`the mirror no longer shows {type} {q}`), w.mirrorLacks)
	sc.Then(step(`the cleanup moved {type} {q} of worker {q} to the ledger as expired`), w.cleanupMoved)
	sc.Then(step(`the cleanup moved nothing`), w.cleanupMovedNothing)
	sc.Then(step(`the diagnostics report (\d+) stale leases?`), w.reportsStale)
	sc.Then(step(`the diagnostics name {type} {q} of worker {q} as stale`), w.reportsStaleLease)
	sc.Then(step(`the diagnostics report (\d+) leases? held in Redis and (\d+) missing from the mirror`), w.reportsHeld)
	sc.Then(step(`the diagnostics are (healthy|unhealthy) when (\d+) stale leases are allowed`), w.reportHealth)
}
