package benchmarks_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/redisstore"
)

// lib is one implementation a case runs.
type lib struct {
	name string
	new  func(tb testing.TB, c *redis.Client) locker
}

var (
	libFloor = lib{"floor", func(tb testing.TB, c *redis.Client) locker { return &floor{c: c} }}
	// lockcoord as shipped: audit outbox on, release notifications on
	libLockcoord = lib{"lockcoord", func(tb testing.TB, c *redis.Client) locker { return newLockcoord(tb, c, 1) }}
	// the outbox off (redisstore.WithOutbox(false)): what the audit costs
	libLockcoordNoOutbox = lib{"lockcoord-nooutbox", func(tb testing.TB, c *redis.Client) locker {
		return newLockcoord(tb, c, 1, redisstore.WithOutbox(false))
	}}
	// lockcoord with redisstore.WithAutoPipeline: concurrent calls share
	// round trips
	libLockcoordAutoPipeline = lib{"lockcoord-autopipeline", func(tb testing.TB, c *redis.Client) locker {
		return newLockcoord(tb, c, 1, redisstore.WithAutoPipeline())
	}}
	libRedislock = lib{"redislock", func(tb testing.TB, c *redis.Client) locker {
		return &redislockLocker{c: redislock.New(c)}
	}}
	// redislock on the client's AutoPipeliner (redislock.New takes any
	// redis.Scripter): the peer given the same lever as
	// lockcoord-autopipeline
	libRedislockAutoPipeline = lib{"redislock-autopipeline", func(tb testing.TB, c *redis.Client) locker {
		ap, err := c.AutoPipeline()
		if err != nil {
			tb.Fatalf("AutoPipeline: %v", err)
		}
		return &redislockLocker{c: redislock.New(ap)}
	}}
	libRedsync = lib{"redsync", func(tb testing.TB, c *redis.Client) locker { return newRedsync(c) }}
)

// BenchmarkFloor measures a PING round trip from one goroutine: the
// loopback, syscall and scheduling cost every Redis call pays, what
// redis-cli --latency reports.
func BenchmarkFloor(b *testing.B) {
	b.Run("op=ping/lib=go-redis", func(b *testing.B) {
		c, cnt := newClient(b)
		pr := startProbe(b, c, cnt)
		lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error { return c.Ping(ctx).Err() })
		pr.report(b, "ops/s", b.N)
		lat.report(b)
	})
}

// BenchmarkPairs measures acquire+release pairs on distinct keys (cases
// 1-3, and 7's outbox cost): one op is one pair.
func BenchmarkPairs(b *testing.B) {
	for _, g := range []int{1, 64} {
		for _, l := range []lib{libFloor, libLockcoord, libLockcoordAutoPipeline, libLockcoordNoOutbox,
			libRedislock, libRedislockAutoPipeline, libRedsync} {
			b.Run("goroutines="+strconv.Itoa(g)+"/lib="+l.name, func(b *testing.B) {
				c, cnt := newClient(b)
				runPairs(b, c, cnt, l, g)
			})
		}
	}
}

// linkDelay is what the realistic-network case adds to each direction
// of every connection: 200 µs each way, a round trip of 400 µs more than
// the loopback's, about what a request between two hosts of one data
// centre takes.
const linkDelay = 200 * time.Microsecond

// BenchmarkNetPairs is BenchmarkPairs over a link with linkDelay added
// each way (a delayProxy in front of the benchmark server): what the
// scripts' cost means once the network, not the loopback, sets the pace
// (issue 15). One op is one pair. Beside the Pairs metrics it reports
// delay-µs, the mean delay the proxy really added per direction (its
// timer wakes up a little late, more so on a busy machine).
func BenchmarkNetPairs(b *testing.B) {
	for _, g := range []int{1, 64} {
		for _, l := range []lib{libFloor, libLockcoord, libLockcoordAutoPipeline, libRedislock} {
			name := "delay=" + strconv.FormatInt(linkDelay.Microseconds(), 10) + "us/goroutines=" + strconv.Itoa(g) + "/lib=" + l.name
			b.Run(name, func(b *testing.B) {
				p := startDelayProxy(b, server(b).Addr, linkDelay)
				c, cnt := newClientAt(b, p.Addr())
				p.resetStats()
				runPairs(b, c, cnt, l, g)
				b.ReportMetric(micros(p.meanDelay()), "delay-µs")
			})
		}
	}
}

// runPairs runs b.N acquire+release pairs of l on distinct keys from g
// goroutines through c, and reports them.
func runPairs(b *testing.B, c *redis.Client, cnt *counter, l lib, g int) {
	b.Helper()
	flush(b, c)
	lk := l.new(b, c)
	warm(b, lk)
	owners := workerNames(g)
	b.ReportAllocs()
	pr := startProbe(b, c, cnt)
	lat := runWorkers(b, g, func(ctx context.Context, w, i int) error { return pair(ctx, lk, "k"+strconv.Itoa(i), owners[w]) })
	pr.report(b, "pairs/s", b.N)
	lat.report(b)
}

// pair takes key for owner and releases it.
func pair(ctx context.Context, lk locker, key, owner string) error {
	h, ok, err := lk.obtain(ctx, key, owner)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("conflict on a fresh key")
	}
	return h.release(ctx)
}

// BenchmarkReentrant measures case 4's re-entrant use: acquire, acquire
// again (count 2), release twice; one op is the four calls. Only lockcoord
// is re-entrant; the floor row is two plain pairs, the same four round
// trips.
func BenchmarkReentrant(b *testing.B) {
	b.Run("lib=floor", func(b *testing.B) {
		c, cnt := newClient(b)
		flush(b, c)
		f := &floor{c: c}
		pr := startProbe(b, c, cnt)
		lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
			for range 2 {
				h, ok, err := f.obtain(ctx, "k"+strconv.Itoa(i), "w0")
				if err != nil || !ok {
					return errors.Join(err, errors.New("floor: not obtained"))
				}
				if err := h.release(ctx); err != nil {
					return err
				}
			}
			return nil
		})
		pr.report(b, "ops/s", b.N)
		lat.report(b)
	})
	b.Run("lib=lockcoord", func(b *testing.B) {
		c, cnt := newClient(b)
		flush(b, c)
		lk := newLockcoord(b, c, 1)
		co := lk.coords[0]
		b.ReportAllocs()
		pr := startProbe(b, c, cnt)
		lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
			r := resource("k" + strconv.Itoa(i))
			for range 2 {
				if _, err := co.Acquire(ctx, r, "w0"); err != nil {
					return err
				}
			}
			for want := 1; want >= 0; want-- {
				l, err := co.Release(ctx, r, "w0")
				if err != nil {
					return err
				}
				if l.Count != want {
					return errors.New("lockcoord: wrong hold count after release")
				}
			}
			return nil
		})
		pr.report(b, "ops/s", b.N)
		lat.report(b)
	})
}

// renewer is a held lock that can be renewed.
type renewer interface {
	held
	renew(ctx context.Context) error
}

// BenchmarkRenew measures the renewal of a held lease (case 4): one op is
// one renewal, 1 goroutine. The floor is a compare-and-PEXPIRE script.
func BenchmarkRenew(b *testing.B) {
	for _, l := range []lib{libFloor, libLockcoord, libLockcoordNoOutbox, libRedislock, libRedsync} {
		b.Run("lib="+l.name, func(b *testing.B) {
			c, cnt := newClient(b)
			flush(b, c)
			lk := l.new(b, c)
			h, ok, err := lk.obtain(context.Background(), "renewed", "w0")
			if err != nil || !ok {
				b.Fatalf("obtain: %v (ok %v)", err, ok)
			}
			rn := h.(renewer)
			b.ReportAllocs()
			pr := startProbe(b, c, cnt)
			lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error { return rn.renew(ctx) })
			pr.report(b, "renewals/s", b.N)
			lat.report(b)
			if err := h.release(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// workerNames returns the owners "w0".."w<n-1>".
func workerNames(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "w" + strconv.Itoa(i)
	}
	return s
}
