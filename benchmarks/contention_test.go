package benchmarks_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/redis/go-redis/v9"
)

// waitLibs are the implementations of the waiting cases (5, 6): lockcoord
// with Wait (release notifications) in one process or one coordinator per
// worker (separate processes), against the peers' documented retry
// strategies and an aggressive 1 ms polling variant of each.
func waitLibs(workers int) []lib {
	return []lib{
		{"lockcoord", func(tb testing.TB, c *redis.Client) locker { return newLockcoord(tb, c, 1) }},
		{"lockcoord-workers", func(tb testing.TB, c *redis.Client) locker { return newLockcoord(tb, c, workers) }},
		// the retry of redislock's README example: every 100 ms
		{"redislock", func(tb testing.TB, c *redis.Client) locker {
			return &redislockLocker{c: redislock.New(c), retry: func() redislock.RetryStrategy {
				return redislock.LinearBackoff(100 * time.Millisecond)
			}}
		}},
		{"redislock-1ms", func(tb testing.TB, c *redis.Client) locker {
			return &redislockLocker{c: redislock.New(c), retry: func() redislock.RetryStrategy {
				return redislock.LinearBackoff(time.Millisecond)
			}}
		}},
		// redsync's defaults: 32 tries, 50-250 ms apart
		{"redsync", func(tb testing.TB, c *redis.Client) locker { return newRedsync(c) }},
		{"redsync-1ms", func(tb testing.TB, c *redis.Client) locker {
			return newRedsync(c, redsync.WithRetryDelay(time.Millisecond), redsync.WithTries(math.MaxInt32))
		}},
	}
}

// contenders and holdTime are case 5's load: 64 goroutines on one key,
// each holding it 1 ms.
const (
	contenders = 64
	holdTime   = time.Millisecond
)

// BenchmarkContention runs 64 goroutines taking one key, holding it 1 ms
// and releasing it, each waiting as its library does. One op is one
// successful acquisition. It reports successes/s, the round trips wasted
// per success (every round trip beyond the acquire and release a success
// needs), and the mean real hold (time.Sleep(1ms) sleeps longer), whose
// inverse is the hold-limited ideal.
func BenchmarkContention(b *testing.B) {
	for _, l := range waitLibs(contenders) {
		b.Run("lib="+l.name, func(b *testing.B) {
			c, cnt := newClient(b)
			flush(b, c)
			lk := l.new(b, c)
			owners := workerNames(contenders)
			warm(b, lk)
			var (
				successes atomic.Int64
				holding   atomic.Int32
				holdSum   atomic.Int64
				endTrips  atomic.Int64
				endTime   atomic.Int64
				wg        sync.WaitGroup
				errOnce   sync.Once
				failure   error
			)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fail := func(err error) { errOnce.Do(func() { failure = err; cancel() }) }
			n := int64(b.N)
			b.ResetTimer()
			start := time.Now()
			trips0 := cnt.n.Load()
			for w := range contenders {
				wg.Go(func() {
					for ctx.Err() == nil {
						h, err := lk.wait(ctx, "contended", owners[w])
						if errors.Is(err, errBusy) {
							return
						}
						if err != nil {
							fail(err)
							return
						}
						if holding.Add(1) != 1 {
							fail(errors.New("two holders at once"))
						}
						if successes.Add(1) == n {
							endTrips.Store(cnt.n.Load())
							endTime.Store(int64(time.Since(start)))
							cancel()
						}
						t := time.Now()
						time.Sleep(holdTime)
						holdSum.Add(int64(time.Since(t)))
						holding.Add(-1)
						if err := h.release(context.Background()); err != nil {
							fail(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if failure != nil {
				b.Fatal(failure)
			}
			elapsed := time.Duration(endTime.Load())
			b.ReportMetric(float64(n)/elapsed.Seconds(), "successes/s")
			// a success needs its acquire and its release; the last
			// success's release came after the count
			needed := 2*n - 1
			b.ReportMetric(float64(endTrips.Load()-trips0-needed)/float64(n), "wasted-trips/op")
			hold := time.Duration(holdSum.Load() / max(successes.Load(), 1))
			b.ReportMetric(micros(hold), "hold-µs")
		})
	}
}

// handoffSettle is how long a holder keeps the lease after every other
// goroutine entered its wait, so that each has made its first attempt and
// waits (subscribed, or sleeping out its backoff) when the release comes.
const handoffSettle = 2 * time.Millisecond

// BenchmarkHandoff measures case 6: the time from the start of a release
// to the next waiter holding the lease, with 1 and 16 waiters queued (one
// op is one hand-off). The holder releases once all the others wait (plus
// handoffSettle); the releaser does not compete again until the lease
// changed hands. It reports p50/p99 and the round trips wasted per
// hand-off (beyond its release and the winning acquire: the waiters'
// failed attempts during the settle and after the release).
func BenchmarkHandoff(b *testing.B) {
	for _, waiters := range []int{1, 16} {
		for _, l := range waitLibs(waiters + 1) {
			b.Run("waiters="+strconv.Itoa(waiters)+"/lib="+l.name, func(b *testing.B) {
				c, cnt := newClient(b)
				flush(b, c)
				lk := l.new(b, c)
				owners := workerNames(waiters + 1)
				warm(b, lk)
				var (
					released  atomic.Int64 // UnixNano of the last release's start
					waiting   atomic.Int32 // goroutines inside lk.wait
					handoffs  atomic.Int64
					endTrips  atomic.Int64
					mu        sync.Mutex
					lat       = make([]time.Duration, 0, b.N)
					wg        sync.WaitGroup
					errOnce   sync.Once
					failure   error
					handedOff = make(chan struct{}, 1)
				)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				fail := func(err error) { errOnce.Do(func() { failure = err; cancel() }) }
				n := int64(b.N)
				b.ResetTimer()
				trips0 := cnt.n.Load()
				for w := range waiters + 1 {
					wg.Go(func() {
						for ctx.Err() == nil {
							waiting.Add(1)
							h, err := lk.wait(ctx, "handoff", owners[w])
							waiting.Add(-1)
							if errors.Is(err, errBusy) {
								return
							}
							if err != nil {
								fail(err)
								return
							}
							if t := released.Load(); t != 0 {
								d := time.Since(time.Unix(0, t))
								mu.Lock()
								lat = append(lat, d)
								mu.Unlock()
								if handoffs.Add(1) == n {
									endTrips.Store(cnt.n.Load())
									cancel()
								}
								select {
								case handedOff <- struct{}{}:
								default:
								}
							}
							for waiting.Load() < int32(waiters) && ctx.Err() == nil {
								time.Sleep(50 * time.Microsecond)
							}
							time.Sleep(handoffSettle)
							released.Store(time.Now().UnixNano())
							if err := h.release(context.Background()); err != nil {
								fail(err)
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
				if failure != nil {
					b.Fatal(failure)
				}
				// each hand-off needs its release and the winner's acquire;
				// the first acquisition is no hand-off
				needed := 2*n + 1
				b.ReportMetric(float64(endTrips.Load()-trips0-needed)/float64(n), "wasted-trips/op")
				l := &latencies{per: [][]time.Duration{lat}}
				l.report(b)
			})
		}
	}
}

// warm takes and releases a key once, so that scripts are cached and
// lockcoord's stores have checked their configuration before timing, and
// for lockcoord a resource of every partition: a partition's first call
// after the FLUSHALL finds no fence marker and makes the store check the
// server again (a failed script call and the checks' round trips), a
// cost of the first minute of a store's life that the timed runs leave
// out.
func warm(tb testing.TB, lk locker) {
	tb.Helper()
	ctx := context.Background()
	for _, owner := range []string{"w0"} {
		h, ok, err := lk.obtain(ctx, "warmup", owner)
		if err != nil || !ok {
			tb.Fatalf("warm-up: %v (obtained %v)", err, ok)
		}
		if err := h.release(ctx); err != nil {
			tb.Fatalf("warm-up release: %v", err)
		}
	}
	if l, ok := lk.(*lockcoordLocker); ok {
		layout := l.stores[0].Layout()
		warmed := make([]bool, layout.Partitions())
		for i, left := 0, len(warmed); left > 0; i++ {
			r := resource("warmup-p" + strconv.Itoa(i))
			if p := layout.Partition(r); !warmed[p] {
				warmed[p] = true
				left--
				if _, err := l.coords[0].Acquire(ctx, r, "warm"); err != nil {
					tb.Fatalf("warm-up: %v", err)
				}
				if _, err := l.coords[0].Release(ctx, r, "warm"); err != nil {
					tb.Fatalf("warm-up: %v", err)
				}
			}
		}
		for i, co := range l.coords {
			r := resource("warmup" + strconv.Itoa(i))
			if _, err := co.Acquire(ctx, r, "warm"); err != nil {
				tb.Fatalf("warm-up: %v", err)
			}
			if _, err := co.Release(ctx, r, "warm"); err != nil {
				tb.Fatalf("warm-up: %v", err)
			}
		}
	}
}
