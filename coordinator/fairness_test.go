package coordinator_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestWaitRemoteWaiterNotStarved: a coordinator queued in the store
// before another's waiters gets the lease before those waiters have taken
// it hundreds of times. It failed when a release handed the lease to the
// releasing coordinator's own waiters with that coordinator queued
// anywhere, and woke them at once: now only a releaser first in the queue
// keeps the turn (ReleaseHandOff), and otherwise its waiters wait theirs.
func TestWaitRemoteWaiterNotStarved(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }()
	s := redisstore.New(client, redisstore.WithPartitions(1))
	ctx := context.Background()
	a, b := coordinator.New(s), coordinator.New(s)
	defer func() { _ = a.Close(ctx) }()
	defer func() { _ = b.Close(ctx) }()
	r := coordinator.Plan("fair")
	queued := func(n int) bool {
		v, _ := client.Get(ctx, s.Layout().QueueKey(r)).Result()
		return len(strings.Fields(v)) == n
	}

	if _, err := a.Acquire(ctx, r, "first", coordinator.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan int32, 1)
	var iters atomic.Int32
	go func() {
		_, err := b.Acquire(ctx, r, "remote", coordinator.Wait(time.Minute))
		bDone <- iters.Load()
		if err == nil {
			_, _ = b.Release(ctx, r, "remote")
		}
	}()
	testutil.Eventually(t, 10*time.Second, "b queued", func() bool { return queued(1) })

	const workers, rounds = 2, 200
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			owner := "local" + strconv.Itoa(i)
			for range rounds {
				if _, err := a.Acquire(ctx, r, owner, coordinator.Wait(time.Minute)); err != nil {
					t.Error(err)
					return
				}
				iters.Add(1)
				if _, err := a.Release(ctx, r, owner); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, "a queued behind b", func() bool { return queued(2) })
	if _, err := a.Release(ctx, r, "first"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := <-bDone; n >= workers*rounds {
		t.Fatalf("the remote waiter got the lease after the local workers' %d acquisitions, all of them", n)
	}
}
