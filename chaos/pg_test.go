package chaos

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/internal/testpg"
)

// pgPool returns a pool on a database of the test's own.
func pgPool(t *testing.T) *pgxpool.Pool { return testpg.New(t).Pool(t) }

func nopLogger() zerolog.Logger { return zerolog.Nop() }
