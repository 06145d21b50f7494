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
	"github.com/lockcoord/lockcoord/coordinator/storetest"
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

// TestWaitFreeWithOthersQueuedLooksSoon: a waiter that meets the resource
// free with another waiter queued ahead (a fair store) looks again soon,
// not after its backoff: once the one ahead has lost its place (its
// process stopped trying), the waiter gets the resource.
func TestWaitFreeWithOthersQueuedLooksSoon(t *testing.T) {
	ctx := t.Context()
	s := storetest.NewMemStore()
	r := coordinator.Plan("free-queued")
	holder := coordinator.New(s)
	if _, err := holder.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	// a waiter queued first, whose process then hangs: subscribed, never
	// trying again
	sub, err := s.ReleasesFor(ctx, "ghost")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	ghost := coordinator.Request{Resource: r, Owner: "ghost", TTL: time.Minute, RequestID: "g-1"}
	if _, err := s.AcquireQueued(ctx, ghost, "ghost", coordinator.Queueing{}); err == nil {
		t.Fatal("the ghost got a held resource")
	}
	if _, err := holder.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	w := coordinator.New(s)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	got := make(chan error, 1)
	go func() {
		_, err := w.Acquire(ctx, r, "w", coordinator.Wait(time.Minute))
		got <- err
	}()
	testutil.Eventually(t, 10*time.Second, "w queued behind the ghost", func() bool {
		return len(s.Queue(r)) == 2
	})
	s.Advance(storetest.MemQueueLife) // the ghost's place lapses; w's attempts keep its own
	var werr error
	testutil.Eventually(t, 10*time.Second, "w to get the resource once the ghost lost its place", func() bool {
		select {
		case werr = <-got:
			return true
		default:
			return false
		}
	})
	if werr != nil {
		t.Fatalf("w: %v", werr)
	}
}
