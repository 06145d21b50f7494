package chaos

import (
	"context"
	"flag"
	"os"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

var (
	fullFlag     = flag.Bool("chaos.full", false, "run the scenarios at full size (also LOCKCOORD_CHAOS=full)")
	checkTimeout = flag.Duration("chaos.check-timeout", 0, "bound of the history check of one resource (default 1m, 10m at full size)")
	pipeFlag     = flag.Bool("chaos.autopipeline", false, "make the scenarios' stores with redisstore.WithAutoPipeline (also LOCKCOORD_CHAOS_AUTOPIPELINE=1)")
)

// autoPipeline reports whether the scenarios' stores pipeline their
// scripts (redisstore.WithAutoPipeline).
func autoPipeline() bool { return *pipeFlag || os.Getenv("LOCKCOORD_CHAOS_AUTOPIPELINE") == "1" }

// full reports whether the scenarios run at full size.
func full() bool { return *fullFlag || os.Getenv("LOCKCOORD_CHAOS") == "full" }

// size picks the short or the full figure.
func size[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the faults make many on purpose
	redis.SetLogger(quietLogger{})
	flag.Parse()
	// the property test's sequences: -rapid.checks (or RAPID_CHECKS) when
	// given, else the scenario's size
	given := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "rapid.checks" })
	if !given {
		if err := flag.Set("rapid.checks", strconv.Itoa(propChecks())); err != nil {
			panic(err)
		}
	}
	testutil.VerifyTestMain(m)
}

// parallel runs t in parallel with the other scenarios at the short size
// (they mostly wait on faults and timers); at full size they run one at a
// time, so that their figures do not disturb one another.
func parallel(t *testing.T) {
	if !full() {
		t.Parallel()
	}
}

// report prints a scenario's figures so that a -v run shows them, and
// keeps them for the summary.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf(format, args...)
}
