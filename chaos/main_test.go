package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

var fullFlag = flag.Bool("chaos.full", false, "run the scenarios at full size (also LOCKCOORD_CHAOS=full)")

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
	goleak.VerifyTestMain(m)
}

// report prints a scenario's figures so that a -v run shows them, and
// keeps them for the summary.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Log(fmt.Sprintf(format, args...))
}
