package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/redisstore"
)

// harness runs the conformance suite on a Cluster or Sentinel client, each
// store with a prefix of its own.
type harness struct {
	client redis.UniversalClient
	opts   []redisstore.Option
}

func (h *harness) NewStore(t testing.TB) coordinator.Store {
	return newStore(t, h.client, h.opts...)
}

func (h *harness) Expire(t testing.TB, s coordinator.Store, r coordinator.Resource) {
	ctx := context.Background()
	key := s.(*redisstore.Store).Key(r)
	if err := h.client.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		n, err := h.client.Exists(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if i > 1000 {
			t.Fatalf("%s did not expire", key)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) RemainingTTL(t testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	d, err := h.client.PTTL(context.Background(), s.(*redisstore.Store).Key(r)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *harness) LoseData(t testing.TB, s coordinator.Store) {
	deletePrefix(t, h.client, s.(*redisstore.Store).Prefix())
}

func (h *harness) SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64) {
	st := s.(*redisstore.Store)
	if err := h.client.Set(context.Background(), st.FenceKey(st.Partition(r)), token, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) DropScripts(t testing.TB, _ coordinator.Store) {
	ctx := context.Background()
	var err error
	if cc, ok := h.client.(*redis.ClusterClient); ok {
		// every master and replica, so that EVALSHA finds it nowhere
		err = cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ScriptFlush(ctx).Err()
		})
	} else {
		err = h.client.ScriptFlush(ctx).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestConformanceCluster(t *testing.T) {
	h := &harness{client: clusterClient(t)}
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
}

// TestConformanceClusterReplicaAck: every acquisition and renewal waits
// for the replica of its partition's master.
func TestConformanceClusterReplicaAck(t *testing.T) {
	storetest.Run(t, &harness{client: clusterClient(t),
		opts: []redisstore.Option{redisstore.WithReplicaAck(1, 10*time.Second)}})
}

func TestConformanceSentinel(t *testing.T) {
	h := &harness{client: sentinelClient(t),
		opts: []redisstore.Option{redisstore.WithReplicaAck(1, 10*time.Second)}}
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
}
