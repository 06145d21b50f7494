package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "lcc-" + hex.EncodeToString(b[:])
}

// clusterClient returns a client of the package's Cluster, closed when t
// ends.
func clusterClient(t testing.TB, opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	cc := env.NeedCluster(t).Client(opts...)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// sentinelClient returns a failover client of the package's Sentinel
// group, closed when t ends.
func sentinelClient(t testing.TB, opts ...func(*redis.FailoverOptions)) *redis.Client {
	t.Helper()
	c := env.NeedSentinel(t).Client(opts...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newStore returns a store on client with a prefix of its own (opts may
// replace it); its keys are deleted when t ends.
func newStore(t testing.TB, client redis.UniversalClient, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s := redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix(randomPrefix())}, opts...)...)
	t.Cleanup(func() { deletePrefix(t, client, s.Prefix()) })
	return s
}

// deletePrefix deletes every key of prefix, on every master of a Cluster.
func deletePrefix(t testing.TB, client redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		return iter.Err()
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, del)
	} else {
		err = del(ctx, client.(*redis.Client))
	}
	if err != nil {
		t.Errorf("clean up %s: %v", prefix, err)
	}
}

// resourcePerPartition returns one resource of type typ in each partition
// of s, in partition order.
func resourcePerPartition(s *redisstore.Store, typ string) []coordinator.Resource {
	out := make([]coordinator.Resource, s.Partitions())
	found := 0
	for i := 0; found < len(out); i++ {
		r := coordinator.Resource{Type: typ, ID: strconv.Itoa(i)}
		if p := s.Partition(r); out[p].Type == "" {
			out[p] = r
			found++
		}
	}
	return out
}

// need(t)(call()) fails t when call returns an error and returns its lease.
func need(t testing.TB) func(coordinator.Lease, error) coordinator.Lease {
	return func(l coordinator.Lease, err error) coordinator.Lease {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return l
	}
}

// request is a store request with a one-minute TTL.
func request(r coordinator.Resource, owner, id string) coordinator.Request {
	return coordinator.Request{Resource: r, Owner: owner, RequestID: id, TTL: time.Minute}
}
