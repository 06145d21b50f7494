package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestFairHandOffOnExpiry: Redisson's RedissonFairLockTest.testLeaseTimeout
// with a client per waiter. Eight waiters, each with a Redis client, a
// store and a coordinator of its own (as processes would be), queue in
// order for a resource whose holder lets its lease expire; each waiter in
// turn lets its own lease expire too. They get the resource in the order
// they queued, and each gets it soon after the lease before it expired:
// the latency, measured on Redis's clock (the next lease's acquired_at
// less the previous one's expires_at), is reported.
func TestFairHandOffOnExpiry(t *testing.T) {
	b := newRealBackend(t)
	ctx := t.Context()
	prefix := randomPrefix()
	layout := redisstore.New(b.client, redisstore.WithPrefix(prefix)).Layout()
	deleteKeys(t, b.client, layout)
	store := func() *redisstore.Store {
		return redisstore.New(b.srv.Client(t), redisstore.WithPrefix(prefix))
	}
	r := coordinator.Plan("fair-expiry")
	const n, ttl = 8, 150 * time.Millisecond
	holder := coordinator.New(store())
	first, err := holder.Acquire(ctx, r, "holder", coordinator.TTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		order  []int
		leases []coordinator.Lease
		wg     sync.WaitGroup
	)
	for i := range n {
		c := coordinator.New(store())
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		wg.Go(func() {
			l, err := c.Acquire(ctx, r, "w"+strconv.Itoa(i), coordinator.TTL(ttl), coordinator.Wait(time.Minute))
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order, leases = append(order, i), append(leases, l)
			mu.Unlock()
		})
		testutil.Eventually(t, 10*time.Second, "waiter "+strconv.Itoa(i)+" queued", func() bool {
			q, _ := b.client.Get(ctx, layout.QueueKey(r)).Result()
			return len(waiterIDs(t, q)) == i+1
		})
	}
	wg.Wait()
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(order, want) {
		t.Fatalf("waiters got the resource in the order %v after expiries, want %v", order, want)
	}
	lat := make([]time.Duration, n)
	prev := first
	for i, l := range leases {
		lat[i] = l.AcquiredAt.Sub(prev.ExpiresAt)
		if lat[i] < 0 {
			t.Fatalf("waiter %d acquired at %v, before the lease before it expired at %v", order[i], l.AcquiredAt, prev.ExpiresAt)
		}
		prev = l
	}
	slices.Sort(lat)
	t.Logf("hand-off after an expiry, Redis clock: p50 %v, max %v (%v)", lat[n/2], lat[n-1], lat)
}
