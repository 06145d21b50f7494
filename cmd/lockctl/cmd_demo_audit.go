package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/cmd/lockctl/internal/demo"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// demoAuditGroup is the consumer group of the demo's mirror.
const demoAuditGroup = "lockcoord-demo"

// demoAudit runs the pgaudit mirror next to the demo, when --database-url
// is given, in a Postgres schema of the demo's own, and checks the ledger
// against the events the demo wrote.
type demoAudit struct {
	pool   *pgxpool.Pool
	schema string // the demo's own
	keep   bool   // keep the schema at the end
	addr   string // host:port/database
	log    zerolog.Logger
	mirror *pgaudit.Mirror
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runErr error
}

// startDemoAudit creates the demo's schema lockcoord_demo_<id>, migrates
// it and starts the mirror on the demo's streams. Every connection of the
// pool has the schema alone on its search_path: the demo writes into no
// other schema.
func (a *app) startDemoAudit(ctx context.Context, dr *demoRedis, id string, keep bool) (*demoAudit, error) {
	schema := "lockcoord_demo_" + id
	pool, err := a.pgPool(ctx, "demo", func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	})
	if err != nil {
		return nil, err
	}
	au := &demoAudit{pool: pool, schema: schema, keep: keep, addr: a.pgAddr, log: a.log, cancel: func() {}}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		pool.Close()
		return nil, &serviceError{service: "Postgres", addr: a.pgAddr, err: fmt.Errorf("create the demo's schema %s: %w", schema, err)}
	}
	if _, err := pgaudit.Migrate(ctx, pool, a.log); err != nil {
		au.close()
		return nil, &serviceError{service: "Postgres", addr: a.pgAddr, err: err}
	}
	au.mirror = pgaudit.NewMirror(pool, dr.store, pgaudit.WithGroup(demoAuditGroup),
		pgaudit.WithBlock(100*time.Millisecond), pgaudit.WithLogger(a.log),
		// untrimmed, the streams count the events written (demo.StreamEntries)
		pgaudit.WithTrimInterval(-1))
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	au.cancel = cancel
	au.wg.Go(func() { au.runErr = au.mirror.Run(mctx) })
	return au, nil
}

// close stops the mirror (if still running), drops the demo's schema
// unless it is to be kept, and closes the pool.
func (au *demoAudit) close() {
	au.cancel()
	au.wg.Wait()
	defer au.pool.Close()
	if au.keep {
		au.log.Info().Str("schema", au.schema).Msg("kept the demo's schema")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := au.pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{au.schema}.Sanitize()+" CASCADE"); err != nil {
		au.log.Warn().Err(err).Str("schema", au.schema).Msg("could not drop the demo's schema")
	}
}

// finish stops the mirror, drains what is left, removes the leases the
// demo's frozen workers left to expire, and checks the ledger: one row
// per event the demo's workers wrote, and no row of theirs left in the
// locks mirror.
func (au *demoAudit) finish(ctx context.Context, sum *demo.Summary, owner string) error {
	au.cancel()
	au.wg.Wait()
	sum.Postgres, sum.Schema, sum.SchemaKept = au.addr, au.schema, au.keep
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
