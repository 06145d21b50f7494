package cluster_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

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
var newStore = redisharness.NewStore

// resourcePerPartition returns one resource of type typ in each partition
// of s, in partition order.
func resourcePerPartition(s *redisstore.Store, typ string) []coordinator.Resource {
	out := make([]coordinator.Resource, s.Layout().Partitions())
	found := 0
	for i := 0; found < len(out); i++ {
		r := coordinator.Resource{Type: typ, ID: strconv.Itoa(i)}
		if p := s.Layout().Partition(r); out[p].Type == "" {
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

// waitQueued waits until a waiter for r is queued in Redis: subscribed
// to the release notifications, and named in r's waiter queue, so that a
// release hands the lease to it.
func waitQueued(t testing.TB, client redis.UniversalClient, s *redisstore.Store, r coordinator.Resource) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "a waiter queued for "+r.String(), func() bool {
		return client.Exists(t.Context(), s.Layout().QueueKey(r)).Val() == 1
	})
}
