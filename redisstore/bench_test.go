package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// BenchmarkAcquireRelease measures acquire+release pairs on distinct keys
// against a real Redis (a throwaway server on loopback).
func BenchmarkAcquireRelease(b *testing.B) {
	srv := testredis.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 128})
	defer client.Close()
	for _, outbox := range []bool{true, false} {
		b.Run("outbox="+strconv.FormatBool(outbox), func(b *testing.B) {
			c := coordinator.New(redisstore.New(client, redisstore.WithPrefix(randomPrefix()), redisstore.WithOutbox(outbox)))
			defer c.Close(context.Background())
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := coordinator.Resource{Type: "bench", ID: strconv.Itoa(i)}
				i++
				if _, err := c.Acquire(ctx, r, "w"); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Release(ctx, r, "w"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandoff measures the time from the start of a release to the
// next waiter holding the lease, with 1 and 16 waiters queued, each its
// own coordinator (as separate workers are). Reports p50 and p99.
func BenchmarkHandoff(b *testing.B) {
	srv := testredis.Start(b)
	for _, waiters := range []int{1, 16} {
		b.Run("waiters="+strconv.Itoa(waiters), func(b *testing.B) {
			prefix := randomPrefix()
			r := coordinator.Plan("handoff")
			var (
				released  atomic.Int64 // UnixNano of the last release's start
				remaining atomic.Int64
				mu        sync.Mutex
				lat       []time.Duration
				wg        sync.WaitGroup
			)
			remaining.Store(int64(b.N))
			clients := make([]*redis.Client, waiters+1)
			coords := make([]*coordinator.Coordinator, waiters+1)
			for i := range coords {
				clients[i] = redis.NewClient(&redis.Options{Addr: srv.Addr})
				coords[i] = coordinator.New(redisstore.New(clients[i], redisstore.WithPrefix(prefix)))
			}
			ctx, cancel := context.WithCancel(context.Background())
			// each goroutine: wait for the lease, record the hand-off, let
			// the next one in: release and wait until someone else holds it
			handedOff := make(chan struct{}, 1)
			b.ResetTimer()
			for i, c := range coords {
				owner := "w" + strconv.Itoa(i)
				wg.Go(func() {
					for ctx.Err() == nil {
						_, err := c.Acquire(ctx, r, owner, coordinator.Wait(time.Minute))
						if err != nil {
							return
						}
						if t := released.Load(); t != 0 {
							d := time.Since(time.Unix(0, t))
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
							select {
							case handedOff <- struct{}{}:
							default:
							}
							if remaining.Add(-1) <= 0 {
								cancel()
							}
						}
						released.Store(time.Now().UnixNano())
						if _, err := c.Release(context.Background(), r, owner); err != nil {
							b.Error(err)
							cancel()
							return
						}
						select {
						case <-handedOff:
						case <-ctx.Done():
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			cancel()
			for i, c := range coords {
				_ = c.Close(context.Background())
				_ = clients[i].Close()
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// BenchmarkWatchLatency measures the time from the start of an
// acquisition to its event reaching a watcher of the resource (the
// outbox read by the store's XREAD BLOCK reader), against a real Redis.
// Reports p50 and p99.
func BenchmarkWatchLatency(b *testing.B) {
	srv := testredis.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	c := coordinator.New(redisstore.New(client, redisstore.WithPrefix(randomPrefix())))
	defer c.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := coordinator.Plan("watched")
	events, err := c.Watch(ctx, r)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := c.Acquire(ctx, r, "w"); err != nil {
			b.Fatal(err)
		}
		for ev := range events {
			if ev.Kind == coordinator.EventAcquired {
				break
			}
		}
		lat = append(lat, time.Since(start))
		if _, err := c.Release(ctx, r, "w"); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkElectionFailover measures the time from a leader's death (its
// coordinator orphans the office: no resignation, no more renewals, as
// after SIGKILL) to the next candidate leading, with an election TTL of
// 100 ms, against a real Redis: the TTL plus the time the waiting
// candidate takes to notice the vacancy. Reports p50 and p99.
func BenchmarkElectionFailover(b *testing.B) {
	const ttl = 100 * time.Millisecond
	srv := testredis.Start(b)
	prefix := randomPrefix()
	var lat []time.Duration
	for b.Loop() {
		clients := [2]*redis.Client{redis.NewClient(&redis.Options{Addr: srv.Addr}), redis.NewClient(&redis.Options{Addr: srv.Addr})}
		var cs [2]*coordinator.Coordinator
		for i := range cs {
			cs[i] = coordinator.New(redisstore.New(clients[i], redisstore.WithPrefix(prefix)), coordinator.WithTTL(coordinator.ElectionType, ttl))
		}
		leading, died, buried := make(chan struct{}), make(chan time.Time, 1), make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = cs[0].Lead(context.Background(), "failover", "old", "", func(context.Context, *coordinator.Term) error {
				close(leading)
				cs[0].Orphan()
				died <- time.Now()
				<-buried // a dead leader does not resign
				return nil
			})
		})
		<-leading
		err := cs[1].Lead(context.Background(), "failover", "new", "", func(context.Context, *coordinator.Term) error {
			lat = append(lat, time.Since(<-died))
			return nil
		})
		close(buried)
		if err != nil {
			b.Fatal(err)
		}
		for i := range cs {
			_ = cs[i].Close(context.Background())
			_ = clients[i].Close()
		}
		wg.Wait()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(ttl.Milliseconds()), "ttl-ms")
}
