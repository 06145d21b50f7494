package pgaudit_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// commandLog records the commands a client sends, alone or pipelined.
type commandLog struct {
	mu        sync.Mutex
	cmds      [][]any
	pipelines []int // length of each pipeline
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, cmd.Args())
		l.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.mu.Lock()
		l.pipelines = append(l.pipelines, len(cmds))
		for _, c := range cmds {
			l.cmds = append(l.cmds, c.Args())
		}
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}

// unbounded returns the recorded commands that may read more than limit
// entries or keys in one call: XRANGE/XREVRANGE without COUNT or with a
// larger one, SCAN with a larger COUNT, KEYS, HGETALL, SMEMBERS, and
// pipelines longer than maxPipeline.
func (l *commandLog) unbounded(limit, maxPipeline int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	for _, args := range l.cmds {
		name := strings.ToLower(fmt.Sprint(args[0]))
		count := -1
		for i := range args {
			if s, ok := args[i].(string); ok && strings.EqualFold(s, "count") && i+1 < len(args) {
				count, _ = strconv.Atoi(fmt.Sprint(args[i+1]))
			}
		}
		switch name {
		case "xrange", "xrevrange", "scan":
			if count < 0 || count > limit {
				bad = append(bad, fmt.Sprint(args))
			}
		case "keys", "hgetall", "smembers", "xread", "xreadgroup":
			bad = append(bad, fmt.Sprint(args))
		}
	}
	for _, n := range l.pipelines {
		if n > maxPipeline {
			bad = append(bad, fmt.Sprintf("a pipeline of %d commands", n))
		}
	}
	return bad
}

// heapSampler samples the live heap until stopped and returns its peak.
func heapSampler() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return max(peak, read())
	}
}

// Issue 12 item 10: with 16 streams of 100k entries and no consumer group,
// diagnostics ran XRANGE ... COUNT 100000 per stream (290 ms each): a
// concurrent acquire+release stalled 4.4 s, diagnostics held 1 GB. Every
// command of Diagnose must be small, whatever the streams and leases.
//
// The default size is 16 × 20k entries and 20k leases; LOCKCOORD_CHAOS=full
// runs the issue's: 16 × 100k entries and 200k leases.
func TestDiagnoseAtScaleSendsOnlySmallCommands(t *testing.T) {
	entries, leases := 20_000, 20_000
	if os.Getenv("LOCKCOORD_CHAOS") == "full" {
		entries, leases = 100_000, 200_000
	}
	pg, rd := newDB(t), newReal(t, redisstore.WithPartitions(16))
	ctx := context.Background()
	start := time.Now()
	fillStreams(t, rd, entries)
	holdLeases(t, rd, leases)
	t.Logf("16 streams of %d entries and %d leases written in %v", entries, leases, time.Since(start))

	// the figures: a worker acquires and releases meanwhile, the slow log
	// records what takes 0.5 ms or more, the heap is sampled
	m := pgaudit.NewMirror(pg.pool, rd.store)
	admin := rd.client
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "500"}, {"slowlog-max-len", "100000"}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.SlowLogReset(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	workerDone := make(chan time.Duration)
	stopWorker := make(chan struct{})
	go func() { workerDone <- worker(rd, stopWorker) }()
	runtime.GC()
	stopHeap := heapSampler()
	base := stopHeap()
	stopHeap = heapSampler()
	start = time.Now()
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	took := time.Since(start)
	peak := stopHeap()
	close(stopWorker)
	slowestWorker := <-workerDone
	slowest, stats := redisFigures(t, admin)
	t.Logf("Diagnose took %v; slow log (the worker's EVALSHA included): %s; usec_per_call: %s", took, slowest, stats)
	t.Logf("Diagnose's peak live heap %.1f MB above the %.1f MB before; a worker's slowest acquire+release meanwhile %v",
		float64(peak-min(peak, base))/1e6, float64(base)/1e6, slowestWorker)
	if err != nil {
		t.Fatal(err)
	}
	if r.LeasesHeld != leases || r.MissingCount != leases || len(r.Missing) != pgaudit.DefaultListLimit ||
		r.Lag.Entries != int64(16*entries) || r.Lag.Undelivered != int64(16*entries) || len(r.Lag.Partitions) != 16 {
		t.Fatalf("report: held %d, missing %d (%d listed), entries %d, undelivered %d", r.LeasesHeld, r.MissingCount,
			len(r.Missing), r.Lag.Entries, r.Lag.Undelivered)
	}

	// the commands: each reads at most a page
	log := &commandLog{}
	client := redis.NewClient(&redis.Options{Addr: rd.srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(log)
	m = pgaudit.NewMirror(pg.pool, redisstore.New(client, redisstore.WithPartitions(16), redisstore.WithPrefix(rd.store.Layout().Prefix())))
	if _, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{}); err != nil {
		t.Fatal(err)
	}
	if bad := log.unbounded(1000, 1100); len(bad) > 0 {
		t.Errorf("Diagnose sent %d commands that read more than 1000 entries or keys at once, e.g. %s", len(bad), bad[0])
	}
	t.Logf("Diagnose sent %d commands in %d pipelines and %d alone", len(log.cmds), len(log.pipelines),
		len(log.cmds)-sum(log.pipelines))

	// a group whose lag Redis cannot count (created at an id of its
	// choosing): the undelivered entries are counted in pages
	first, err := admin.XRangeN(ctx, rd.store.Layout().StreamKey(0), "-", "+", 101).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.XGroupCreate(ctx, rd.store.Layout().StreamKey(0), m.Group(), first[100].ID).Err(); err != nil {
		t.Fatal(err)
	}
	r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil || r.Lag.Partitions[0].Undelivered != int64(entries-101) || r.Lag.Partitions[0].NoGroup {
		t.Fatalf("undelivered entries counted in pages: %+v, %v", r.Lag.Partitions[0], err)
	}
	if bad := log.unbounded(1000, 1100); len(bad) > 0 {
		t.Errorf("Diagnose sent %d commands that read more than 1000 entries or keys at once, e.g. %s", len(bad), bad[0])
	}
}

// fillStreams appends n entries, as acquire.lua writes them, to each of
// the 16 partition streams (server-side, 10k per script call).
func fillStreams(t *testing.T, rd *redisEnv, n int) {
	t.Helper()
	const fill = `for i = 1, tonumber(ARGV[1]) do
	redis.call('XADD', KEYS[1], '*', 'event', 'acquired', 'type', 'plan', 'id', 'x' .. i, 'owner', 'worker-1',
		'token', tostring(1700000000000000 + i), 'count', '1', 'at', '1700000000000', 'acquired_at', '1700000000000',
		'expires_at', '1700000060000', 'req', 'r' .. i)
end
return 0`
	for p := range 16 {
		for left := n; left > 0; left -= 10_000 {
			if err := rd.client.Eval(context.Background(), fill, []string{rd.store.Layout().StreamKey(p)}, min(left, 10_000)).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// holdLeases writes n lease hashes (plan/l<i>, acquired an hour ago) the
// way acquire.lua does, without events.
func holdLeases(t *testing.T, rd *redisEnv, n int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UnixMilli()
	for lo := 0; lo < n; lo += 10_000 {
		_, err := rd.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+10_000, n); i++ {
				p.HSet(ctx, rd.store.Layout().LeaseKey(coordinator.Plan("l"+itoa(i))), "owner", "worker-1", "count", "1",
					"token", strconv.Itoa(1_800_000_000_000_000+i), "acquired_at", strconv.FormatInt(now-3_600_000, 10),
					"expires_at", strconv.FormatInt(now+3_600_000, 10))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// worker acquires and releases a lease (under a prefix of its own) until
// stop is closed and returns its slowest round trip.
func worker(rd *redisEnv, stop chan struct{}) time.Duration {
	store := redisstore.New(rd.client, redisstore.WithPrefix(rd.store.Layout().Prefix()+"-worker"))
	var slowest time.Duration
	res := coordinator.Plan("worker")
	for i := 0; ; i++ {
		select {
		case <-stop:
			return slowest
		default:
		}
		start := time.Now()
		req := coordinator.Request{Resource: res, Owner: "w", TTL: time.Minute, RequestID: "scale-" + itoa(i)}
		if _, err := store.Acquire(context.Background(), req); err == nil {
			req.RequestID += "-r"
			_, _ = store.Release(context.Background(), req)
		}
		slowest = max(slowest, time.Since(start))
	}
}

// redisFigures returns the slowest of each command in the slow log (at
// least 0.5 ms) and the commands' mean times from INFO commandstats.
func redisFigures(t *testing.T, admin redis.UniversalClient) (string, string) {
	t.Helper()
	ctx := context.Background()
	logs, err := admin.SlowLogGet(ctx, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	slowest := "none of 0.5 ms or more"
	if len(logs) > 0 {
		top := map[string]redis.SlowLog{} // the slowest of each command
		for _, l := range logs {
			if name := strings.ToLower(l.Args[0]); l.Duration > top[name].Duration {
				top[name] = l
			}
		}
		var each []string
		for _, name := range slices.Sorted(maps.Keys(top)) {
			var args []string
			for i, a := range top[name].Args {
				if i == 4 {
					args = append(args, "…")
					break
				}
				if len(a) > 40 {
					a = a[:40] + "…"
				}
				args = append(args, a)
			}
			each = append(each, fmt.Sprintf("%v %q", top[name].Duration, args))
		}
		slowest = fmt.Sprintf("%d of 0.5 ms or more; the slowest of each command: %s", len(logs), strings.Join(each, "; "))
	}
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var stats []string
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
				stats = append(stats, strings.TrimPrefix(name, "cmdstat_")+"="+v)
			}
		}
	}
	return slowest, strings.Join(stats, " ")
}

func sum(s []int) int {
	n := 0
	for _, x := range s {
		n += x
	}
	return n
}
