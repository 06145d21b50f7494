package pgaudit

import (
	"context"
	"embed"
	"errors"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/rs/zerolog"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the table in which goose records the applied migrations.
const VersionTable = "lockcoord_schema_version"

// migrationLockID is the Postgres session advisory lock (single bigint key
// space) held while migrating, so that two processes migrating at once
// apply each migration once. 0x6c6f636b is "lock" in ASCII; goose's own
// default id is another.
const migrationLockID int64 = 0x6c6f636b

// Migrations returns the embedded SQL migrations (goose format), for an
// operator who applies them with the goose command line instead of
// Migrate.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrationFiles, "migrations")
	return sub
}

// Migrate brings the schema of the database pool connects to up to date:
// the locks and lock_events tables and their indexes. It is idempotent,
// and safe when several processes run it at once: goose holds a Postgres
// session advisory lock on a connection of its own while it migrates,
// waiting up to five minutes for another migrator. It returns the names of
// the migrations it applied (none when the schema was current) and logs
// each to log.
//
// The role needs the right to create tables in the current schema; the
// mirror's role needs only the privileges docs/operations.md lists.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log zerolog.Logger) ([]string, error) {
	if pool == nil {
		return nil, errors.New("pgaudit: migrate: nil pool")
	}
	// a connection of its own, never the pool's: the session lock dies
	// with it, whatever happens
	db := stdlib.OpenDB(*pool.Config().ConnConfig.Copy())
	defer func() { _ = db.Close() }()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, 300), lock.WithUnlockTimeout(1, 60))
	var results []*goose.MigrationResult
	if err == nil {
		var p *goose.Provider
		p, err = goose.NewProvider(goose.DialectPostgres, db, Migrations(),
			goose.WithTableName(VersionTable), goose.WithSessionLocker(locker), goose.WithLogger(goose.NopLogger()))
		if err == nil {
			results, err = p.Up(ctx)
		}
	}
	var applied []string
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, r.Source.Path)
			log.Info().Str("migration", r.Source.Path).Dur("took", r.Duration).Msg("pgaudit: migration applied")
		}
	}
	if err != nil {
		log.Error().Err(err).Msg("pgaudit: migration failed")
		return applied, pgError("migrate", err)
	}
	if len(applied) == 0 {
		log.Debug().Msg("pgaudit: schema is up to date")
	}
	return applied, nil
}
