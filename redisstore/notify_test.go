package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// subscribe subscribes to channel and waits for the confirmation, so that
// nothing published afterwards is missed.
func subscribe(t *testing.T, ctx context.Context, ps *redis.PubSub) *redis.PubSub {
	t.Helper()
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return ps
}

// expectMessages reads len(want) messages and compares their payloads in
// order.
func expectMessages(t *testing.T, ctx context.Context, ps *redis.PubSub, channel string, want ...string) {
	t.Helper()
	for i, w := range want {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := ps.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("message %d (want %q): %v", i, w, err)
		}
		if m.Channel != channel || m.Payload != w {
			t.Fatalf("message %d = %q on %q, want %q on %q", i, m.Payload, m.Channel, w, channel)
		}
	}
}

func TestReleaseNotification(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		// one partition: every release is announced on the same channel,
		// so the order of the messages shows which releases published
		s := b.newStore(t, redisstore.WithPartitions(1))
		ch := s.Layout().ReleaseChannel(0)
		if want := s.Layout().Prefix() + ":{0}:released"; ch != want {
			t.Fatalf("Channel(0) = %q, want %q", ch, want)
		}
		ps := subscribe(t, ctx, b.client.Subscribe(ctx, ch))
		var ids reqIDs
		a := coordinator.Resource{Type: "plan", ID: "a/1"}
		bb := coordinator.Project("b ü")
		c := coordinator.Resource{Type: "job", ID: "c"}
		d := coordinator.Resource{Type: "job", ID: "d"}
		for _, r := range []coordinator.Resource{a, a, bb, c, d} {
			lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		}
		// a decrement, a failed release and a repeated release announce
		// nothing
		lease(t)(s.Release(ctx, request(a, "w1", ids.next(), 0)))
		if _, err := s.Release(ctx, request(bb, "w2", ids.next(), 0)); err == nil {
			t.Fatal("release by another owner succeeded")
		}
		id := ids.next()
		lease(t)(s.Release(ctx, request(bb, "w1", id, 0)))
		lease(t)(s.Release(ctx, request(bb, "w1", id, 0)))
		lease(t)(s.Release(ctx, request(a, "w1", ids.next(), 0)))
		lease(t)(s.ForceRelease(ctx, c, ids.next()))
		if n, err := s.ReleaseAll(ctx, "w1", ids.next()); err != nil || n != 1 {
			t.Fatalf("ReleaseAll = %d, %v", n, err)
		}
		expectMessages(t, ctx, ps, ch, bb.String(), a.String(), c.String(), d.String())
	})
}

func TestNotificationsOff(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		quiet := b.newStore(t, redisstore.WithPartitions(1), redisstore.WithNotifications(false))
		loud := redisstore.New(b.client, redisstore.WithPrefix(quiet.Layout().Prefix()), redisstore.WithPartitions(1))
		ch := quiet.Layout().ReleaseChannel(0)
		ps := subscribe(t, ctx, b.client.Subscribe(ctx, ch))
		var ids reqIDs
		x, y, z := coordinator.Plan("x"), coordinator.Plan("y"), coordinator.Plan("z")
		for _, r := range []coordinator.Resource{x, y, z} {
			lease(t)(quiet.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		}
		lease(t)(quiet.Release(ctx, request(x, "w1", ids.next(), 0)))
		lease(t)(quiet.ForceRelease(ctx, z, ids.next()))
		// the first message must come from the store that announces
		lease(t)(loud.Release(ctx, request(y, "w1", ids.next(), 0)))
		expectMessages(t, ctx, ps, ch, y.String())
	})
}

// startCluster starts a one-node Redis Cluster owning every slot.
func startCluster(t *testing.T) *testredis.Server {
	t.Helper()
	srv := testredis.Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
	ctx := t.Context()
	c := srv.Client(t)
	args := []any{"CLUSTER", "ADDSLOTS"} // ADDSLOTSRANGE needs Redis 7
	for slot := range 16384 {
		args = append(args, slot)
	}
	if err := c.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTS: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the cluster to come up", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(info, "cluster_state:ok")
	})
	return srv
}

// TestClusterShardedNotification runs the store on a Cluster client: the
// release is announced with SPUBLISH, and ReleaseAll's pipelined index
// reads work across partitions.
func TestClusterShardedNotification(t *testing.T) {
	srv := startCluster(t)
	ctx := t.Context()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	s := redisharness.NewStore(t, cc)
	if !s.Cluster() {
		t.Fatal("Cluster() = false on a ClusterClient")
	}
	if plain := redisstore.New(srv.Client(t)); plain.Cluster() {
		t.Fatal("Cluster() = true on a plain client")
	}
	r := coordinator.Plan("sharded/1")
	ch := s.Layout().ReleaseChannel(s.Layout().Partition(r))
	ps := subscribe(t, ctx, cc.SSubscribe(ctx, ch))
	var ids reqIDs
	lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
	lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
	expectMessages(t, ctx, ps, ch, r.String())

	for i := range 20 {
		lease(t)(s.Acquire(ctx, request(coordinator.Resource{Type: "job", ID: string(rune('a' + i))}, "w1", ids.next(), time.Minute)))
	}
	if n, err := s.ReleaseAll(ctx, "w1", ids.next()); err != nil || n != 20 {
		t.Fatalf("ReleaseAll on Cluster = %d, %v; want 20", n, err)
	}
}

// receive returns the next resource of a subscription, failing after 10s.
func receive(t *testing.T, sub coordinator.Subscription) coordinator.Resource {
	t.Helper()
	select {
	case r, ok := <-sub.Released():
		if !ok {
			t.Fatal("subscription closed")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no release notification within 10s")
	}
	return coordinator.Resource{}
}

func TestReleases(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(4))
		sub, err := s.Releases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids reqIDs
		r1, r2 := coordinator.Plan("one"), coordinator.Resource{Type: "job", ID: "two/ü"}
		for _, r := range []coordinator.Resource{r1, r1, r2} {
			lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		}
		lease(t)(s.Release(ctx, request(r1, "w1", ids.next(), 0))) // a decrement: nothing
		lease(t)(s.Release(ctx, request(r1, "w1", ids.next(), 0)))
		if got := receive(t, sub); got != r1 {
			t.Fatalf("first notification %v, want %v", got, r1)
		}
		// a message that is not a resource is skipped
		if err := b.client.Publish(ctx, s.Layout().ReleaseChannel(s.Layout().Partition(r2)), "not a resource").Err(); err != nil {
			t.Fatal(err)
		}
		lease(t)(s.Release(ctx, request(r2, "w1", ids.next(), 0)))
		if got := receive(t, sub); got != r2 {
			t.Fatalf("second notification %v, want %v", got, r2)
		}
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, open := <-sub.Released(); open {
			t.Fatal("Released() still open after Close")
		}
		if err := sub.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// TestReleasesSlowReader: a reader that does not keep up loses
// notifications but never blocks the subscription or its Close.
func TestReleasesSlowReader(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client, redisstore.WithPartitions(1))
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := b.client.Publish(ctx, s.Layout().ReleaseChannel(0), "job/"+string(rune('a'+i%26))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// wait until the buffer is full: the subscription is then blocked
	// handing over the next one
	testutil.Eventually(t, 10*time.Second, "a full buffer of notifications", func() bool {
		return len(sub.Released()) == cap(sub.Released())
	})
	closed := make(chan error)
	go func() { closed <- sub.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked behind a slow reader")
	}
	n := 0
	for range sub.Released() {
		n++
	}
	if n == 0 || n > cap(sub.Released()) {
		t.Fatalf("%d notifications delivered after Close, want the buffered ones", n)
	}
}

// TestReleasesCluster: on Cluster every partition's channel lives in its
// own slot, so one SSUBSCRIBE cannot cover them all.
func TestReleasesCluster(t *testing.T) {
	srv := startCluster(t)
	ctx := t.Context()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	s := redisharness.NewStore(t, cc)
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatalf("Releases on Cluster: %v", err)
	}
	defer sub.Close()
	var ids reqIDs
	for _, r := range []coordinator.Resource{coordinator.Plan("c1"), coordinator.Plan("c2"), coordinator.Project("c3")} {
		lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
		if got := receive(t, sub); got != r {
			t.Fatalf("notification %v, want %v", got, r)
		}
	}
}
