package cluster_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// BenchmarkThroughput measures acquire + release pairs per second through
// a coordinator, 16 goroutines per CPU each on resources of its own (no
// conflicts), on a single redis-server, on the 3-master Cluster, and on
// the Sentinel-managed master, with and without WithReplicaAck(1, 1s).
// One op is one pair: two scripts, and with WithReplicaAck one WAIT.
// docs/operations.md (Redis Cluster and Sentinel) has figures.
//
//	go test -run '^$' -bench Throughput -benchtime 3s ./cluster/
func BenchmarkThroughput(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		srv := testredis.Start(b)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
		b.Cleanup(func() { _ = c.Close() })
		benchPairs(b, newStore(b, c))
	})
	b.Run("cluster", func(b *testing.B) {
		benchPairs(b, newStore(b, clusterClient(b, pool64)))
	})
	b.Run("cluster-ack", func(b *testing.B) {
		benchPairs(b, newStore(b, clusterClient(b, pool64), redisstore.WithReplicaAck(1, time.Second)))
	})
	b.Run("sentinel", func(b *testing.B) {
		benchPairs(b, newStore(b, sentinelClient(b, sentinelPool64)))
	})
	b.Run("sentinel-ack", func(b *testing.B) {
		benchPairs(b, newStore(b, sentinelClient(b, sentinelPool64), redisstore.WithReplicaAck(1, time.Second)))
	})
}

// BenchmarkLatency measures one acquire + release pair at a time: the
// latency WithReplicaAck's WAIT adds on a master with one replica.
//
//	go test -run '^$' -bench Latency ./cluster/
func BenchmarkLatency(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []redisstore.Option
	}{
		{"sentinel", nil},
		{"sentinel-ack", []redisstore.Option{redisstore.WithReplicaAck(1, time.Second)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newStore(b, sentinelClient(b), tc.opts...)
			c := coordinator.New(s)
			b.Cleanup(func() { _ = c.Close(context.Background()) })
			ctx := context.Background()
			r := coordinator.Plan("latency")
			for b.Loop() {
				if _, err := c.Acquire(ctx, r, "w1"); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Release(ctx, r, "w1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func pool64(o *redis.ClusterOptions)          { o.PoolSize = 64 }
func sentinelPool64(o *redis.FailoverOptions) { o.PoolSize = 64 }

func benchPairs(b *testing.B, s *redisstore.Store) {
	c := coordinator.New(s)
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	var gid atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := strconv.FormatInt(gid.Add(1), 10)
		owner := "bench-" + g
		for i := 0; pb.Next(); i++ {
			r := coordinator.Resource{Type: "job", ID: g + "-" + strconv.Itoa(i%64)}
			if _, err := c.Acquire(ctx, r, owner); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Release(ctx, r, owner); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
