package chaos

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/chaos/internal/pgdb"
)

// pgPool returns a pool on a database of the test's own.
func pgPool(t *testing.T) *pgxpool.Pool { return pgdb.New(t) }

func nopLogger() zerolog.Logger { return zerolog.Nop() }
