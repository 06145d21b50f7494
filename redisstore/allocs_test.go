package redisstore_test

import (
	"context"
	"testing"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// pairAllocs is the bound on the client's allocations per acquire+release
// pair through a Coordinator on a Store (outbox and notifications on, as
// shipped), on a plain go-redis client: 80 before the cuts of issue 15,
// 39 after them, with a margin. A rise above it is a regression of the
// call path (go-redis's own share included: about 20 of the 39, reading
// the reply and checking the pooled connection).
const pairAllocs = 45

// TestPairAllocations: an acquire+release pair allocates at most
// pairAllocs times on the client (testing.AllocsPerRun, deterministic
// for one goroutine).
func TestPairAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocations are measured without -short")
	}
	st := redisstore.New(testredis.Start(t).Client(t))
	co := coordinator.New(st)
	t.Cleanup(func() { _ = co.Close(context.Background()) })
	ctx := t.Context()
	r := coordinator.Resource{Type: "bench", ID: "k1"}
	var err error
	pair := func() {
		if err != nil {
			return
		}
		if _, err = co.Acquire(ctx, r, "w0"); err == nil {
			_, err = co.Release(ctx, r, "w0")
		}
	}
	pair() // the checks of the first call
	got := testing.AllocsPerRun(200, pair)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("allocations per pair: %.1f", got)
	if got > pairAllocs {
		t.Errorf("allocations per pair = %.1f, want <= %d", got, pairAllocs)
	}
}
