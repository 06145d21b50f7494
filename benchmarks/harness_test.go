package benchmarks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// counter is a go-redis hook counting round trips: one per command, one
// per pipeline. A script's EVALSHA that Redis answers NOSCRIPT and its
// EVAL fallback count as two.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// poolSize is the go-redis pool of every client: room for 64 workers,
// their waits' subscriptions and the harness.
const poolSize = 128

// newClient returns a client of the benchmark server with the settings
// every library gets, and its round-trip counter; both end with tb. The
// pool is filled before it is returned, so no benchmark pays for dials.
func newClient(tb testing.TB) (*redis.Client, *counter) {
	tb.Helper()
	return newClientAt(tb, server(tb).Addr)
}

// newClientAt is newClient connecting to addr (the benchmark server, or
// a proxy in front of it).
func newClientAt(tb testing.TB, addr string) (*redis.Client, *counter) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize})
	tb.Cleanup(func() { _ = c.Close() })
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() { _ = c.Ping(context.Background()).Err() })
	}
	wg.Wait()
	cnt := &counter{}
	c.AddHook(cnt)
	return c, cnt
}

// flush empties the benchmark server (ours alone) so that every case
// starts from the same memory; the script cache is kept.
func flush(tb testing.TB, c *redis.Client) {
	tb.Helper()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatalf("flushall: %v", err)
	}
}

func randomPrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "bench" + hex.EncodeToString(b)
}

// latencies collects one duration per operation from several workers.
type latencies struct {
	per [][]time.Duration
}

func newLatencies(workers, n int) *latencies {
	l := &latencies{per: make([][]time.Duration, workers)}
	for i := range l.per {
		l.per[i] = make([]time.Duration, 0, n/workers+1)
	}
	return l
}

func (l *latencies) add(w int, d time.Duration) { l.per[w] = append(l.per[w], d) }

// report adds p50-µs and p99-µs to b.
func (l *latencies) report(b *testing.B) {
	all := slices.Concat(l.per...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(micros(all[len(all)/2]), "p50-µs")
	b.ReportMetric(micros(all[min(len(all)-1, len(all)*99/100)]), "p99-µs")
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// runWorkers runs op b.N times in total on `workers` goroutines, timing
// each call, with the benchmark timer running only around the calls. op
// gets the worker number and the operation's sequence number (0..b.N-1).
// It returns the latencies; the first error stops every worker.
func runWorkers(b *testing.B, workers int, op func(ctx context.Context, w, i int) error) *latencies {
	b.Helper()
	lat := newLatencies(workers, b.N)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		err     error
	)
	b.ResetTimer()
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N || ctx.Err() != nil {
					return
				}
				start := time.Now()
				if e := op(ctx, w, i); e != nil {
					errOnce.Do(func() { err = e; cancel() })
					return
				}
				lat.add(w, time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return lat
}

// serverCPU reads the CPU time of the Redis main thread (user + system).
func serverCPU(tb testing.TB, c *redis.Client) time.Duration {
	tb.Helper()
	info, err := c.InfoMap(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatalf("info cpu: %v", err)
	}
	var total float64
	for _, k := range []string{"used_cpu_user_main_thread", "used_cpu_sys_main_thread"} {
		v, err := strconv.ParseFloat(info["CPU"][k], 64)
		if err != nil {
			tb.Fatalf("info cpu %s: %v", k, err)
		}
		total += v
	}
	return time.Duration(total * float64(time.Second))
}

// probe measures what Redis and the client spent on the operations of a
// benchmark: round trips, Redis main-thread CPU.
type probe struct {
	c      *redis.Client
	cnt    *counter
	trips0 int64
	cpu0   time.Duration
	start  time.Time
}

func startProbe(tb testing.TB, c *redis.Client, cnt *counter) *probe {
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		tb.Fatalf("config resetstat: %v", err)
	}
	cpu0 := serverCPU(tb, c)
	return &probe{c: c, cnt: cnt, trips0: cnt.n.Load(), cpu0: cpu0, start: time.Now()}
}

// scriptTime returns what Redis reports of the scripts it ran since the
// last CONFIG RESETSTAT: calls and the mean execution time of one call
// (INFO commandstats, EVALSHA and EVAL together), the inner commands
// included, the network excluded.
func scriptTime(tb testing.TB, c *redis.Client) (calls int64, perCall time.Duration) {
	tb.Helper()
	info, err := c.InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatalf("info commandstats: %v", err)
	}
	var usec float64
	for _, k := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		// calls=2,usec=27,usec_per_call=13.50,rejected_calls=0,failed_calls=0
		for _, kv := range strings.Split(info["Commandstats"][k], ",") {
			name, v, _ := strings.Cut(kv, "=")
			switch name {
			case "calls":
				n, _ := strconv.ParseInt(v, 10, 64)
				calls += n
			case "usec":
				f, _ := strconv.ParseFloat(v, 64)
				usec += f
			}
		}
	}
	if calls == 0 {
		return 0, 0
	}
	return calls, time.Duration(usec / float64(calls) * 1e3)
}

// report adds per-op throughput (unit rate, e.g. "pairs/s"), round trips
// and Redis CPU per op to b.
func (p *probe) report(b *testing.B, rate string, ops int) {
	elapsed := time.Since(p.start)
	trips := p.cnt.n.Load() - p.trips0
	cpu := serverCPU(b, p.c) - p.cpu0
	if ops <= 0 {
		return
	}
	b.ReportMetric(float64(ops)/elapsed.Seconds(), rate)
	b.ReportMetric(float64(trips)/float64(ops), "trips/op")
	b.ReportMetric(micros(cpu)/float64(ops), "redis-µs/op")
	if calls, per := scriptTime(b, p.c); calls > 0 {
		b.ReportMetric(micros(per), "script-µs/call")
	}
}
