package benchmarks_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// leases is case 8's number of held leases (-leases; the CI smoke run
// takes fewer).
var leases = flag.Int("leases", 100_000, "leases held by BenchmarkMemory and BenchmarkList")

// BenchmarkMemory holds 100,000 leases and reports the Redis memory they
// take: B/lease is the growth of used_memory per lease (lease keys, and
// for lockcoord its fencing counters, owner index and audit outbox
// entries), key-B/lease what MEMORY USAGE reports for the lease key alone,
// B/released what is left per lease once they are all released (for
// lockcoord: the release's request memo, kept for the retry window, and
// the outbox entries, kept until the mirror trims them).
// The timed op is reading one lease: lockcoord's Inspect (owner, token,
// count, times), a GET of the key for the others.
func BenchmarkMemory(b *testing.B) {
	for _, l := range []lib{libFloor, libLockcoord, libLockcoordNoOutbox, libRedislock, libRedsync} {
		b.Run("leases="+strconv.Itoa(*leases)+"/lib="+l.name, func(b *testing.B) {
			c, _ := newClient(b)
			flush(b, c)
			lk := l.new(b, c)
			ctx := context.Background()
			before := usedMemory(b, c)
			keys := fill(b, c, lk, *leases)
			after := usedMemory(b, c)
			perLease := float64(after-before) / float64(*leases)
			perKey := float64(keyUsage(b, c, keys)) / float64(*leases)
			var read func(i int) error
			if lc, ok := lk.(*lockcoordLocker); ok {
				co := lc.coords[0]
				read = func(i int) error {
					_, err := co.Inspect(ctx, resource("m"+strconv.Itoa(i)))
					return err
				}
			} else {
				read = func(i int) error { return c.Get(ctx, keys[i]).Err() }
			}
			for b.Loop() {
				if err := read(rand.IntN(*leases)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// what stays in Redis once lockcoord's leases are released: each
			// release's request memo, for the retry window (30 s), and the
			// outbox entries, until the mirror trims them (the others free
			// everything)
			left := -1.0
			if lc, ok := lk.(*lockcoordLocker); ok {
				release(b, lc, keys)
				left = float64(usedMemory(b, c)-before) / float64(*leases)
			}
			// after the loop: b.Loop's start resets reported metrics
			b.ReportMetric(perLease, "B/lease")
			b.ReportMetric(perKey, "key-B/lease")
			if left >= 0 {
				b.ReportMetric(left, "B/released")
			}
			flush(b, c)
		})
	}
}

// fill takes n leases "m0".."m<n-1>" (lease i for owner w<i % 64>) with
// 64 goroutines and returns their Redis keys. lockcoord's are taken through its store, so that no
// coordinator tracks (and on Close releases) 100,000 holds.
func fill(tb testing.TB, c *redis.Client, lk locker, n int) []string {
	tb.Helper()
	keys := make([]string, n)
	obtain := func(ctx context.Context, i int, owner string) (string, error) {
		key := "m" + strconv.Itoa(i)
		_, ok, err := lk.obtain(ctx, key, owner)
		if err == nil && !ok {
			err = errors.New("conflict on a fresh key")
		}
		return key, err
	}
	if lc, ok := lk.(*lockcoordLocker); ok {
		st := lc.stores[0]
		obtain = func(ctx context.Context, i int, owner string) (string, error) {
			r := resource("m" + strconv.Itoa(i))
			_, err := st.Acquire(ctx, coordinator.Request{Resource: r, Owner: owner, TTL: leaseTTL,
				RequestID: "fill-" + strconv.Itoa(i)})
			return st.Layout().LeaseKey(r), err
		}
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	owners := workerNames(64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key, err := obtain(context.Background(), i, owners[i%64])
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
				keys[i] = key
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		tb.Fatalf("fill: %v", ferr)
	}
	return keys
}

// release releases the n leases fill took through lockcoord's store
// ("m<i>" of owner w<i % 64>), with 64 goroutines.
func release(tb testing.TB, lk *lockcoordLocker, keys []string) {
	tb.Helper()
	ctx := context.Background()
	st := lk.stores[0]
	owners := workerNames(64)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				_, err := st.Release(ctx, coordinator.Request{Resource: resource("m" + strconv.Itoa(i)),
					Owner: owners[i%64], RequestID: "rel-" + strconv.Itoa(i)})
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		tb.Fatalf("release: %v", ferr)
	}
}

func usedMemory(tb testing.TB, c *redis.Client) int64 {
	tb.Helper()
	info, err := c.InfoMap(context.Background(), "memory").Result()
	if err != nil {
		tb.Fatalf("info memory: %v", err)
	}
	n, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	if err != nil {
		tb.Fatalf("used_memory: %v", err)
	}
	return n
}

// keyUsage sums MEMORY USAGE over keys, 1,000 per pipeline.
func keyUsage(tb testing.TB, c *redis.Client, keys []string) int64 {
	tb.Helper()
	ctx := context.Background()
	var total int64
	for start := 0; start < len(keys); start += 1000 {
		batch := keys[start:min(start+1000, len(keys))]
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.MemoryUsage(ctx, k)
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("memory usage: %v", err)
		}
		for _, cmd := range cmds {
			total += cmd.(*redis.IntCmd).Val()
		}
	}
	return total
}

// BenchmarkList runs `lockctl list --json` over 100,000 held leases (case
// 8): one op is one full listing. It builds lockctl from ../cmd/lockctl.
func BenchmarkList(b *testing.B) {
	b.Run("leases="+strconv.Itoa(*leases)+"/lib=lockctl", func(b *testing.B) {
		bin := buildLockctl(b)
		c, _ := newClient(b)
		flush(b, c)
		lk := newLockcoord(b, c, 1)
		fill(b, c, lk, *leases)
		st := lk.stores[0]
		srv := server(b)
		args := []string{"list", "--json", "--redis-url", "redis://" + srv.Addr + "/0", "--prefix", st.Layout().Prefix()}
		var out countWriter
		for b.Loop() {
			out.n = 0
			cmd := exec.Command(bin, args...)
			cmd.Stdout = &out
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("lockctl %v: %v", args, err)
			}
		}
		b.StopTimer()
		if out.n == 0 {
			b.Fatal("lockctl list printed nothing")
		}
		b.ReportMetric(float64(*leases)*float64(b.N)/b.Elapsed().Seconds(), "leases/s")
		flush(b, c)
	})
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

var (
	lockctlOnce sync.Once
	lockctlBin  string
	lockctlErr  error
)

// buildLockctl builds ../cmd/lockctl once per test binary.
func buildLockctl(tb testing.TB) string {
	tb.Helper()
	lockctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lockcoord-bench-lockctl-")
		if err != nil {
			lockctlErr = err
			return
		}
		lockctlBin = filepath.Join(dir, "lockctl")
		cmd := exec.Command("go", "build", "-o", lockctlBin, "./cmd/lockctl")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			lockctlErr = fmt.Errorf("go build ./cmd/lockctl: %w\n%s", err, out)
		}
	})
	if lockctlErr != nil {
		tb.Fatal(lockctlErr)
	}
	return lockctlBin
}
