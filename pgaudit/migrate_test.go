package pgaudit_test

import (
	"context"
	"io/fs"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/pgaudit"
)

func TestMigrateConcurrentlyAppliesOnce(t *testing.T) {
	pg := newDB(t) // migrated once already: drop the schema to start over
	ctx := context.Background()
	pg.AdminExec(t, "SELECT 1") // admin reachable
	if _, err := pg.pool.Exec(ctx, "DROP TABLE lock_events, locks, lock_dead_letters, "+pgaudit.VersionTable); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	applied := make([][]string, 3)
	errs := make([]error, 3)
	for i := range applied {
		wg.Go(func() {
			pool := pg.newPool(t, "migrator")
			applied[i], errs[i] = pgaudit.Migrate(ctx, pool, zerolog.Nop())
		})
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	files, _ := fs.Glob(pgaudit.Migrations(), "*.sql")
	if total != len(files) || len(files) == 0 {
		t.Fatalf("migrators applied %d migrations in all, want each of the %d once", total, len(files))
	}
	again, err := pgaudit.Migrate(ctx, pg.pool, zerolog.Nop())
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate on a current schema = %v, %v; want nothing applied", again, err)
	}
	for _, idx := range []string{"locks_pkey", "locks_owner_id_idx", "locks_expires_at_idx",
		"lock_events_pkey", "lock_events_resource_idx", "lock_events_ended_idx", "lock_dead_letters_pkey",
		"lock_dead_letters_open_idx"} {
		if pg.count(t, "SELECT count(*) FROM pg_indexes WHERE indexname = $1", idx) != 1 {
			t.Errorf("index %s missing", idx)
		}
	}
}

func TestMigrateFails(t *testing.T) {
	if _, err := pgaudit.Migrate(context.Background(), nil, zerolog.Nop()); err == nil {
		t.Fatal("Migrate(nil pool) succeeded")
	}
	pg := newDB(t)
	// a table in the way: the migration fails and says so
	if _, err := pg.pool.Exec(context.Background(), "DROP TABLE lock_events, locks, lock_dead_letters, "+pgaudit.VersionTable+
		"; CREATE TABLE locks (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgaudit.Migrate(context.Background(), pg.pool, zerolog.Nop()); err == nil {
		t.Fatal("Migrate over a conflicting table succeeded")
	}
}
