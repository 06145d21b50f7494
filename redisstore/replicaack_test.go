package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// otherClient is a UniversalClient that is neither a *redis.Client nor a
// *redis.ClusterClient.
type otherClient struct{ *redis.Client }

func TestReplicaAckValidation(t *testing.T) {
	ctx := t.Context()
	b := newMiniBackend(t)
	r := coordinator.Plan("1")
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		n      int
		d      time.Duration
		value  string
	}{
		{"negative count", b.client, -1, time.Second, "-1"},
		{"zero timeout", b.client, 1, 0, "0s"},
		{"sub-millisecond timeout", b.client, 2, time.Microsecond, "1µs"},
		{"client without connections of its own", otherClient{b.client}, 1, time.Second, "redisstore_test.otherClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redisstore.New(tc.client, redisstore.WithReplicaAck(tc.n, tc.d))
			_, err := s.Acquire(ctx, request(r, "w1", "a", time.Minute))
			ve, ok := errors.AsType[*coordinator.ValidationError](err)
			if !ok || ve.Field != "WithReplicaAck" || ve.Value != tc.value {
				t.Fatalf("Acquire = %v, want a ValidationError of WithReplicaAck with value %q", err, tc.value)
			}
		})
	}
	// n = 0 is off whatever the timeout: no WAIT (miniredis has none)
	s := b.newStore(t, redisstore.WithReplicaAck(0, 0))
	lease(t)(s.Acquire(ctx, request(r, "w1", "b", time.Minute)))
}

// startReplicated starts a master and a replica in sync with it.
func startReplicated(t *testing.T) (master, replica *testredis.Server) {
	t.Helper()
	master = testredis.Start(t, "--repl-diskless-sync-delay", "0") // the default waits 5s for more replicas
	host, port, _ := strings.Cut(master.Addr, ":")
	replica = testredis.Start(t, "--replicaof", host, port)
	ctx := t.Context()
	c := master.Client(t)
	testutil.Eventually(t, 10*time.Second, "the replica in sync", func() bool {
		info := must[string](t)(c.Info(ctx, "replication").Result())
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	return master, replica
}

// TestReplicaAck: with the replica in sync every change is acknowledged;
// without it, an acquisition is undone and a renewal kept, both reported
// as ErrReplicaAck.
func TestReplicaAck(t *testing.T) {
	master, replica := startReplicated(t)
	ctx := t.Context()
	c := master.Client(t)
	b := &backend{name: "redis", srv: master, client: c}
	s := b.newStore(t, redisstore.WithReplicaAck(1, 5*time.Second))
	var ids reqIDs
	held := coordinator.Plan("held")
	l := lease(t)(s.Acquire(ctx, request(held, "w1", ids.next(), time.Minute)))
	// the replica has it: WAIT returned after the replica applied it
	rc := replica.Client(t)
	if got := must[string](t)(rc.HGet(ctx, s.Layout().LeaseKey(held), "token").Result()); got != strconv.FormatUint(l.Token, 10) {
		t.Fatalf("replica has token %s, want %d", got, l.Token)
	}
	lease(t)(s.Renew(ctx, request(held, "w1", ids.next(), time.Minute)))
	// a conflict changes nothing and waits for nothing
	var ce *coordinator.ConflictError
	if _, err := s.Acquire(ctx, request(held, "w2", ids.next(), time.Minute)); !errors.As(err, &ce) {
		t.Fatalf("Acquire by another owner = %v, want a conflict", err)
	}

	replica.Kill()
	quick := b.newStore(t, redisstore.WithPrefix(s.Layout().Prefix()), redisstore.WithReplicaAck(1, 50*time.Millisecond))
	fresh := coordinator.Plan("fresh")
	_, err := quick.Acquire(ctx, request(fresh, "w1", ids.next(), time.Minute))
	if !errors.Is(err, redisstore.ErrReplicaAck) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("Acquire without replica = %v, want ErrReplicaAck (0 of 1)", err)
	}
	if _, err := quick.Inspect(ctx, fresh); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Inspect of an unacknowledged acquisition = %v, want ErrNotHeld (undone)", err)
	}
	// the undone acquisition is in the outbox as acquired, then released
	var events []string
	for _, e := range entries(t, c, s.Layout().StreamKey(s.Layout().Partition(fresh))) {
		if e["id"] == fresh.ID {
			events = append(events, e["event"])
		}
	}
	if strings.Join(events, ",") != "acquired,released" {
		t.Fatalf("events of the undone acquisition: %v", events)
	}
	// a re-entry is undone: the count stays
	if _, err := quick.Acquire(ctx, request(held, "w1", ids.next(), time.Minute)); !errors.Is(err, redisstore.ErrReplicaAck) {
		t.Fatalf("re-entry without replica = %v, want ErrReplicaAck", err)
	}
	if got := lease(t)(quick.Inspect(ctx, held)); got.Count != 1 || got.Token != l.Token {
		t.Fatalf("after an undone re-entry: %+v, want count 1, token %d", got, l.Token)
	}
	// a renewal is kept on the master, and reported
	// (for an hour: its expiry is later than the one-minute lease's,
	// whatever Redis's clock says)
	before := lease(t)(quick.Inspect(ctx, held))
	_, err = quick.Renew(ctx, request(held, "w1", ids.next(), time.Hour))
	if !errors.Is(err, redisstore.ErrReplicaAck) {
		t.Fatalf("Renew without replica = %v, want ErrReplicaAck", err)
	}
	if after := lease(t)(quick.Inspect(ctx, held)); !after.ExpiresAt.After(before.ExpiresAt) {
		t.Fatalf("renewal not kept on the master: expiry %v, before %v", after.ExpiresAt, before.ExpiresAt)
	}
	// an AcquireAll in one script is undone as a whole
	both := colocated(t, quick, "all-ack", 2)
	_, err = quick.AcquireAll(ctx, allReqs("w1", ids.next(), both...))
	if !errors.Is(err, redisstore.ErrReplicaAck) || !strings.Contains(err.Error(), "acquisitions were undone") {
		t.Fatalf("AcquireAll without replica = %v, want ErrReplicaAck, undone", err)
	}
	for _, r := range both {
		if _, err := quick.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("Inspect of %s after an unacknowledged AcquireAll = %v, want ErrNotHeld (undone)", r, err)
		}
	}
	// releases do not wait
	lease(t)(quick.Release(ctx, request(held, "w1", ids.next(), 0)))
}

// TestReplicaAckCoordinator: the coordinator passes ErrReplicaAck through
// and holds nothing afterwards.
func TestReplicaAckCoordinator(t *testing.T) {
	master := testredis.Start(t) // no replica at all
	ctx := t.Context()
	b := &backend{name: "redis", srv: master, client: master.Client(t)}
	s := b.newStore(t, redisstore.WithReplicaAck(1, time.Millisecond))
	c := coordinator.New(s)
	r := coordinator.Project("p")
	if _, err := c.Acquire(ctx, r, "w1"); !errors.Is(err, redisstore.ErrReplicaAck) {
		t.Fatalf("Acquire = %v, want ErrReplicaAck", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Inspect = %v, want ErrNotHeld", err)
	}
}

// TestConformanceReplicaAck runs the conformance suite with
// WithReplicaAck on a master with a replica in sync.
func TestConformanceReplicaAck(t *testing.T) {
	master, _ := startReplicated(t)
	storetest.Run(t, &redisharness.Client{Client: master.Client(t),
		Options: []redisstore.Option{redisstore.WithReplicaAck(1, 10*time.Second)}})
}

// pipelinedScripts counts the scripts that went through a pipeline (an
// AutoPipeliner's batch) rather than one command on a connection.
type pipelinedScripts struct{ n atomic.Int64 }

func (h *pipelinedScripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelinedScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *pipelinedScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				h.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// burst acquires 16 resources of s at once, named after prefix.
func burst(t *testing.T, s *redisstore.Store, prefix string) {
	t.Helper()
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			r := coordinator.Plan(prefix + strconv.Itoa(g))
			_, err := s.Acquire(t.Context(), request(r, "w1", prefix+"-"+strconv.Itoa(g), time.Minute))
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestReplicaAckUnderAutoPipeline: with WithAutoPipeline, the scripts of
// WithReplicaAck still run on their own connection, WAIT after them on
// it, never in a shared batch, also when called at once; without
// WithReplicaAck concurrent scripts do share batches (the hook sees
// them).
func TestReplicaAckUnderAutoPipeline(t *testing.T) {
	master, replica := startReplicated(t)
	ctx := t.Context()
	c := master.Client(t)
	h := &pipelinedScripts{}
	c.AddHook(h)
	b := &backend{name: "redis", srv: master, client: c}

	plain := b.newStore(t, redisstore.PipelineAlwaysForTest())
	round := 0
	testutil.Eventually(t, 10*time.Second, "scripts in a shared batch", func() bool {
		round++
		burst(t, plain, "plain"+strconv.Itoa(round)+"-")
		return h.n.Load() > 0
	})

	h.n.Store(0)
	s := b.newStore(t, redisstore.PipelineAlwaysForTest(), redisstore.WithReplicaAck(1, 5*time.Second))
	for i := range 5 {
		burst(t, s, "acked"+strconv.Itoa(i)+"-")
	}
	if n := h.n.Load(); n != 0 {
		t.Fatalf("%d acknowledged scripts went through a shared batch", n)
	}
	held := coordinator.Plan("acked0-0")
	l := lease(t)(s.Inspect(ctx, held))
	if got := must[string](t)(replica.Client(t).HGet(ctx, s.Layout().LeaseKey(held), "token").Result()); got != strconv.FormatUint(l.Token, 10) {
		t.Fatalf("replica has token %s, want %d", got, l.Token)
	}
}
