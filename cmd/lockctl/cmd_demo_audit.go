package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockcoord/lockcoord/cmd/lockctl/internal/demo"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// demoAuditGroup is the consumer group of the demo's mirror.
const demoAuditGroup = "lockcoord-demo"

// demoAudit runs the pgaudit mirror next to the demo, when --database-url
// is given, and checks the ledger against the events the demo wrote.
type demoAudit struct {
	pool   *pgxpool.Pool
	mirror *pgaudit.Mirror
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runErr error
}

// startDemoAudit migrates the database and starts the mirror on the demo's
// streams.
func (a *app) startDemoAudit(ctx context.Context, dr *demoRedis) (*demoAudit, error) {
	pool, err := a.pgPool(ctx, "demo")
	if err != nil {
		return nil, err
	}
	if _, err := pgaudit.Migrate(ctx, pool, a.log); err != nil {
		pool.Close()
		return nil, &serviceError{service: "Postgres", addr: a.pgAddr, err: err}
	}
	au := &demoAudit{pool: pool, mirror: pgaudit.NewMirror(pool, dr.store, pgaudit.WithGroup(demoAuditGroup),
		pgaudit.WithBlock(100*time.Millisecond), pgaudit.WithLogger(a.log))}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	au.cancel = cancel
	au.wg.Go(func() { au.runErr = au.mirror.Run(mctx) })
	return au, nil
}

// close stops the mirror (if still running) and closes the pool.
func (au *demoAudit) close() {
	au.cancel()
	au.wg.Wait()
	au.pool.Close()
}

// finish stops the mirror, drains what is left, removes the leases the
// demo's frozen workers left to expire, and checks the ledger: one row
// per event the demo's workers wrote, and no row of theirs left in the
// locks mirror.
func (au *demoAudit) finish(ctx context.Context, sum *demo.Summary, owner string) error {
	au.cancel()
	au.wg.Wait()
	if au.runErr != nil {
		return au.runErr
	}
	// also when ctx ended the demo early (Ctrl-C): the ledger check is its end
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := au.mirror.Drain(ctx); err != nil {
		return fmt.Errorf("demo: drain the audit streams: %w", err)
	}
	if _, err := au.mirror.Cleanup(ctx); err != nil {
		return fmt.Errorf("demo: clean up the mirror: %w", err)
	}
	like := owner + "-w%"
	var rows, held int
	err := errors.Join(
		au.pool.QueryRow(ctx, `SELECT count(*) FROM lock_events WHERE owner_id LIKE $1 AND event <> 'expired'`, like).Scan(&rows),
		au.pool.QueryRow(ctx, `SELECT count(*) FROM locks WHERE owner_id LIKE $1`, like).Scan(&held))
	if err != nil {
		return fmt.Errorf("demo: count the ledger rows: %w", err)
	}
	sum.LedgerRows = &rows
	sum.Check("ledger rows equal events written", rows == sum.EventsWritten,
		fmt.Sprintf("%d rows in lock_events, %d events written", rows, sum.EventsWritten))
	sum.Check("mirror holds none of the demo's leases", held == 0, fmt.Sprintf("%d rows in locks", held))
	return nil
}
