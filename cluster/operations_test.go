package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestEveryOperationOnCluster runs every store and coordinator operation
// on leases in every partition, so on every master: a CROSSSLOT (or any
// other) error fails it. The scripts' keys share the partition's hash
// tag; ReleaseAll's pipelined reads of the owner indexes span every slot,
// which go-redis splits by node.
func TestEveryOperationOnCluster(t *testing.T) {
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc)
	c := coordinator.New(s)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	rs := resourcePerPartition(s, "job")

	for _, r := range rs {
		l := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Minute)))
		if re := need(t)(c.Acquire(ctx, r, "w1")); re.Count != 2 || re.Token != l.Token {
			t.Fatalf("re-entry of %s: %+v", r, re)
		}
		need(t)(c.Renew(ctx, r, "w1", coordinator.TTL(2*time.Minute)))
		if got := need(t)(c.Inspect(ctx, r)); got.Owner != "w1" || got.Count != 2 {
			t.Fatalf("Inspect %s: %+v", r, got)
		}
		var ce *coordinator.ConflictError
		if _, err := c.Acquire(ctx, r, "w2"); !errors.As(err, &ce) || ce.Holder != "w1" {
			t.Fatalf("Acquire by w2 of %s = %v, want a conflict naming w1", r, err)
		}
		if left := need(t)(c.Release(ctx, r, "w1")); left.Count != 1 {
			t.Fatalf("Release of %s left %d holds", r, left.Count)
		}
	}
	// ReleaseAll reads 16 owner indexes in one pipeline, across masters
	n, err := c.ReleaseAll(ctx, "w1")
	if err != nil || n != len(rs) {
		t.Fatalf("ReleaseAll = %d, %v; want %d", n, err, len(rs))
	}
	for _, r := range rs {
		if _, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s after ReleaseAll: %v", r, err)
		}
	}
	// the operator's way out
	for _, r := range rs[:4] {
		need(t)(c.Acquire(ctx, r, "w3"))
		if l := need(t)(s.ForceRelease(ctx, r, "force-"+r.ID)); l.Owner != "w3" {
			t.Fatalf("ForceRelease of %s: %+v", r, l)
		}
	}
	// Hold with a keep-alive that renews several times
	r := rs[len(rs)-1]
	err = c.Hold(ctx, r, "w4", func(ctx context.Context, l coordinator.Lease) error {
		ka := c.KeepAlive(ctx, l)
		defer ka.Stop()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ended := false
		err := testutil.Poll(pctx, 50*time.Millisecond, func() error {
			select {
			case <-ka.Done():
				ended = true
				return nil
			default:
			}
			if !ka.Lease().ExpiresAt.After(l.ExpiresAt.Add(500 * time.Millisecond)) {
				return testutil.ErrNotYet
			}
			return nil
		})
		switch {
		case ended:
			return ka.Err()
		case err != nil:
			return fmt.Errorf("no renewal within 10s: %+v", ka.Lease())
		}
		return nil
	}, coordinator.TTL(900*time.Millisecond))
	if err != nil {
		t.Fatalf("Hold on Cluster: %v", err)
	}
	// every change is in its partition's stream: the outbox the mirror reads
	for p := range s.Layout().Partitions() {
		if n, err := cc.XLen(ctx, s.Layout().StreamKey(p)).Result(); err != nil || n == 0 {
			t.Fatalf("stream of partition %d: %d entries, %v", p, n, err)
		}
	}
}

// TestReleasesOnEveryMaster: the release notification subscription, one
// SSUBSCRIBE per partition, delivers releases from every partition.
func TestReleasesOnEveryMaster(t *testing.T) {
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc)
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatalf("Releases on Cluster: %v", err)
	}
	defer func() {
		if err := sub.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	rs := resourcePerPartition(s, "plan")
	for i, r := range rs {
		need(t)(s.Acquire(ctx, request(r, "w1", fmt.Sprint("a", i))))
		need(t)(s.Release(ctx, request(r, "w1", fmt.Sprint("r", i))))
	}
	var got []coordinator.Resource
	timeout := time.After(10 * time.Second)
	for len(got) < len(rs) {
		select {
		case r := <-sub.Released():
			got = append(got, r)
		case <-timeout:
			t.Fatalf("%d of %d release notifications within 10s: %v", len(got), len(rs), got)
		}
	}
	key := func(r coordinator.Resource) string { return r.String() }
	want := slices.Clone(rs)
	sort.Slice(got, func(i, j int) bool { return key(got[i]) < key(got[j]) })
	sort.Slice(want, func(i, j int) bool { return key(want[i]) < key(want[j]) })
	if !slices.Equal(got, want) {
		t.Fatalf("notifications %v, want %v", got, want)
	}
}

// TestWaitHandOffOnCluster: a waiter gets the resource once the holder
// releases it, whichever master holds it, and reports the hand-off time:
// a few milliseconds when the sharded release notification woke it, 50 ms
// or more when its fallback polling did (TestReleasesOnEveryMaster checks
// the notifications themselves; a benchmark, not a test, judges speed).
func TestWaitHandOffOnCluster(t *testing.T) {
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc)
	holder, waiter := coordinator.New(s), coordinator.New(s)
	t.Cleanup(func() {
		_ = holder.Close(context.Background())
		_ = waiter.Close(context.Background())
	})
	var handoffs []time.Duration
	for _, r := range resourcePerPartition(s, "project") {
		need(t)(holder.Acquire(ctx, r, "holder"))
		type result struct {
			l   coordinator.Lease
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			l, err := waiter.Acquire(ctx, r, "waiter", coordinator.Wait(20*time.Second))
			done <- result{l, err, time.Now()}
		}()
		waitQueued(t, cc, s, r)
		released := time.Now()
		need(t)(holder.Release(ctx, r, "holder"))
		res := <-done
		if res.err != nil {
			t.Fatalf("waiter on %s: %v", r, res.err)
		}
		handoffs = append(handoffs, res.at.Sub(released))
		need(t)(waiter.Release(ctx, r, "waiter"))
	}
	slices.Sort(handoffs)
	median := handoffs[len(handoffs)/2]
	t.Logf("hand-off after release on Cluster: median %v, max %v over %d partitions", median, handoffs[len(handoffs)-1], len(handoffs))
}

// TestReleasesFollowAFailover: a release subscription survives a
// failover of the master of a partition's slot (Redis ends the sharded
// subscription when the slot moves; the store subscribes again where it
// is), and a waiter on that partition is still woken.
func TestReleasesFollowAFailover(t *testing.T) {
	cl := env.NeedCluster(t)
	ctx := t.Context()
	cc := clusterClient(t, quickCluster)
	s := newStore(t, cc)
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sub.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	r := resourcePerPartition(s, "plan")[0]
	slot, err := cc.ClusterKeySlot(ctx, s.Layout().LeaseKey(r)).Result()
	if err != nil {
		t.Fatal(err)
	}
	victim, err := cl.MasterOf(ctx, int(slot))
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := cl.Failover(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	tries, took := awaitNotified(t, s, sub, r)
	t.Logf("%s took over slot %d from %s; release %d was notified, %v after the failover",
		promoted, slot, victim, tries, took.Round(time.Millisecond))

	holder, waiter := coordinator.New(s), coordinator.New(s)
	t.Cleanup(func() {
		_ = holder.Close(context.Background())
		_ = waiter.Close(context.Background())
	})
	need(t)(holder.Acquire(ctx, r, "holder"))
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(ctx, r, "waiter", coordinator.Wait(20*time.Second))
		done <- err
	}()
	waitQueued(t, cc, s, r)
	need(t)(holder.Release(ctx, r, "holder"))
	if err := <-done; err != nil {
		t.Fatalf("waiter after the failover: %v", err)
	}
}

// awaitNotified acquires and releases r until sub delivers its release
// notification (those sent while a subscription moves to a new master
// may be lost, which waiters cover by polling), and returns how many
// releases and how long that took. Other notifications are drained.
func awaitNotified(t *testing.T, s *redisstore.Store, sub coordinator.Subscription, r coordinator.Resource) (int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start, tries := time.Now(), 0
	for {
		tries++
		if _, err := s.Acquire(ctx, request(r, "notified", fmt.Sprint("a", tries))); err != nil {
			t.Fatalf("Acquire %s after the failover: %v", r, err)
		}
		if _, err := s.Release(ctx, request(r, "notified", fmt.Sprint("r", tries))); err != nil {
			t.Fatalf("Release %s after the failover: %v", r, err)
		}
		timeout := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case got := <-sub.Released():
				if got == r {
					return tries, time.Since(start)
				}
			case <-timeout:
				break drain
			case <-ctx.Done():
				t.Fatalf("no release notification of %s after the failover (%d releases)", r, tries)
			}
		}
	}
}
