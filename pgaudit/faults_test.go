package pgaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// faults makes chosen Redis commands fail, alone or in a pipeline.
type faults struct {
	mu   sync.Mutex
	fail map[string]bool
}

var errInjected = errors.New("injected fault")

func injectFaults(c redis.UniversalClient) *faults {
	f := &faults{fail: map[string]bool{}}
	c.AddHook(f)
	return f
}

func (f *faults) set(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = map[string]bool{}
	for _, n := range names {
		f.fail[n] = true
	}
}

func (f *faults) failing(cmd redis.Cmder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[cmd.Name()]
}

func (f *faults) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.failing(cmd) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var ok []redis.Cmder
		var err error
		for _, c := range cmds {
			if f.failing(c) {
				c.SetErr(errInjected)
				err = errInjected
				continue
			}
			ok = append(ok, c)
		}
		if len(ok) > 0 {
			if nerr := next(ctx, ok); err == nil {
				err = nerr
			}
		}
		return err
	}
}

func TestRedisFailuresAreReported(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	f := injectFaults(rd.client)
	m := mirror(pg.pool, rd, pgaudit.WithBatchSize(1), pgaudit.WithClaimIdle(time.Minute))

	rd.mustAcquire(t, coordinator.Plan("stale"), "w", time.Second)
	rd.mustAcquire(t, coordinator.Plan("kept"), "w", time.Hour)
	drain(t, m)
	rd.advance(2 * time.Second)
	rd.mustAcquire(t, coordinator.Plan("new"), "w", time.Hour)
	// a consumer holds an entry pending
	p := rd.store.Layout().Partition(coordinator.Plan("new"))
	if _, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: m.Group(), Consumer: "ghost",
		Streams: []string{rd.store.Layout().StreamKey(p), ">"}, Count: 1, Block: -1}).Result(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmd   string
		calls []string
	}{
		{"xgroup", []string{"drain"}},
		{"get", []string{"drain"}}, // the partition count (CheckPartitions)
		{"xreadgroup", []string{"drain"}},
		{"xautoclaim", []string{"drain"}},
		{"xpending", []string{"drain", "diagnose"}},
		{"xtrim", []string{"drain"}},
		{"time", []string{"cleanup", "diagnose"}},
		{"hmget", []string{"cleanup", "diagnose"}},
		{"scan", []string{"diagnose"}},
		{"xlen", []string{"diagnose"}},
		{"xrange", []string{"diagnose"}},
		{"info", []string{"diagnose"}}, // the Redis configuration
	} {
		f.set(c.cmd)
		for _, call := range c.calls {
			var err error
			switch call {
			case "drain":
				_, err = m.Drain(ctx)
			case "cleanup":
				_, err = m.Cleanup(ctx)
			case "diagnose":
				_, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
			}
			if !errors.Is(err, errInjected) {
				t.Errorf("%s with %s failing: %v", call, c.cmd, err)
			}
		}
	}
	// no expired row left, a missing lease: Diagnose checks it again in Redis
	f.set()
	if _, err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	f.set("hmget")
	if _, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1}); !errors.Is(err, errInjected) {
		t.Errorf("diagnose re-checking missing leases with hmget failing: %v", err)
	}
	// each partition read on its own (Cluster)
	f.set("xreadgroup")
	if _, err := mirror(pg.pool, rd, pgaudit.WithPerPartitionReads()).Drain(ctx); !errors.Is(err, errInjected) {
		t.Errorf("per-partition read with xreadgroup failing: %v", err)
	}
	f.set()
	drain(t, m)
}

func TestDiagnoseRejectsCorruptLeases(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)
	key := rd.store.Layout().LeaseKey(coordinator.Plan("bad"))
	// a hash without an owner is not a lease; one with a bad count is corrupt
	rd.mr.HSet(key, "count", "1")
	if r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{}); err != nil || r.LeasesHeld != 0 {
		t.Fatalf("hash without owner: %+v, %v", r, err)
	}
	rd.mr.HSet(key, "owner", "w", "count", "many", "token", "1", "acquired_at", "1", "expires_at", "2")
	if _, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{}); err == nil || !strings.Contains(err.Error(), "count") {
		t.Fatalf("corrupt lease: %v", err)
	}
}

func TestRunSurvivesRedisFailures(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	f := injectFaults(rd.client)
	var logs syncBuffer
	log := zerolog.New(&logs).Level(zerolog.DebugLevel)
	m := mirror(pg.pool, rd, pgaudit.WithLogger(log), pgaudit.WithTrimInterval(0), pgaudit.WithConsumer("a"),
		pgaudit.WithCleanupInterval(time.Hour), pgaudit.WithDrainTimeout(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	// no groups can be created: Run retries until cancelled
	f.set("xgroup")
	go func() { done <- m.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, "a retry", func() bool { return promtest.ToFloat64(m.MetricsRetries()) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// reads, trims, cleanup and acknowledgements fail for a while
	ctx, cancel = context.WithCancel(context.Background())
	f.set("xreadgroup", "xtrim", "time")
	go func() { done <- m.Run(ctx) }()
	before := promtest.ToFloat64(m.MetricsRetries())
	testutil.Eventually(t, 5*time.Second, "read retries", func() bool { return promtest.ToFloat64(m.MetricsRetries()) > before+1 })
	f.set("xack", "xtrim")
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	testutil.Eventually(t, 5*time.Second, "the commit", func() bool { return pg.count(t, "SELECT count(*) FROM lock_events") == 1 })
	cancel() // the acknowledgement still fails: Run gives up after the drain timeout
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	x, _ := rd.client.XPending(context.Background(), rd.store.Layout().StreamKey(rd.store.Layout().Partition(coordinator.Plan("1"))), m.Group()).Result()
	if x.Count != 1 {
		t.Fatalf("%d pending after the failed acknowledgement, want 1", x.Count)
	}
	f.set()
	drain(t, m)
	if n := pg.count(t, "SELECT count(*) FROM lock_events"); n != 1 {
		t.Fatalf("%d ledger rows", n)
	}
	for _, want := range []string{"mirror started", "could not read the streams", "trim failed", "cleanup failed",
		"could not acknowledge a batch", "batch applied", "mirror stopped", `"consumer":"a"`,
		`"service":"Redis"`, "pgaudit: Redis is back: could read the streams again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestPostgresRejectingWritesIsRetriedAndReported(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd, pgaudit.WithDrainTimeout(50*time.Millisecond))
	rd.mustAcquire(t, coordinator.Plan("old"), "w", time.Second)
	drain(t, m)
	rd.advance(2 * time.Second)
	if _, err := pg.pool.Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
		AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON lock_events FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Cleanup(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Cleanup with the ledger refusing rows: %v", err)
	}
	rd.mustAcquire(t, coordinator.Plan("new"), "w", time.Hour)
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := m.Drain(dctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Drain with the ledger refusing rows: %v", err)
	}
	if promtest.ToFloat64(m.MetricsRetries()) == 0 {
		t.Fatal("no retry")
	}
	if _, err := pg.pool.Exec(ctx, "DROP TRIGGER refuse ON lock_events"); err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	if _, err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	sameLeases(t, rd, pg)
}

// TestPostgresRecoveryIsLogged (issue 16.9): while Postgres refuses the
// batch the mirror logs each retry; when it takes it again, one Info line
// says Postgres is back, after how many failed attempts and how long.
func TestPostgresRecoveryIsLogged(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	bg := context.Background()
	var logs syncBuffer
	m := mirror(pg.pool, rd, pgaudit.WithLogger(zerolog.New(&logs)), pgaudit.WithCleanupInterval(-1),
		pgaudit.WithDrainTimeout(100*time.Millisecond))
	if _, err := pg.pool.Exec(bg, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
		AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON lock_events FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "two retries", func() bool { return promtest.ToFloat64(m.MetricsRetries()) >= 2 })
	if strings.Contains(logs.String(), "is back") {
		t.Fatal("a recovery logged while Postgres still refuses")
	}
	if _, err := pg.pool.Exec(bg, "DROP TRIGGER refuse ON lock_events"); err != nil {
		t.Fatal(err)
	}
	const back = "pgaudit: Postgres is back: could apply a batch in Postgres again"
	testutil.Eventually(t, 10*time.Second, "the recovery line", func() bool { return strings.Contains(logs.String(), back) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v["message"] == back {
			lines = append(lines, v)
		}
	}
	if len(lines) != 1 || lines[0]["level"] != "info" || lines[0]["service"] != "Postgres" ||
		lines[0]["failed_attempts"].(float64) < 2 || lines[0]["outage"] == nil {
		t.Fatalf("recovery lines %v, want one info line naming Postgres, the failed attempts and the outage", lines)
	}
}

func TestBatchOfOnlyMalformedEntries(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	if err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: rd.store.Layout().StreamKey(0), Values: []string{"event", "noise"}}).Err(); err != nil {
		t.Fatal(err)
	}
	m := mirror(pg.pool, rd)
	if n := drain(t, m); n != 0 || promtest.ToFloat64(m.MetricsMalformed()) != 1 || len(pg.deadLetters(t)) != 1 {
		t.Fatalf("applied %d, malformed %v, dead letters %d", n, promtest.ToFloat64(m.MetricsMalformed()), len(pg.deadLetters(t)))
	}
	if rd.streamLen(t) != 0 {
		t.Fatal("the malformed entry was not acknowledged and trimmed")
	}
}

func TestParseStreamID(t *testing.T) {
	for _, bad := range []string{"", "12", "x-1", "1-x", "-1-0", "1--1"} {
		if _, _, err := pgaudit.ParseStreamID(bad); err == nil {
			t.Errorf("ParseStreamID(%q) succeeded", bad)
		}
	}
	if ms, seq, err := pgaudit.ParseStreamID("1700000000000-42"); err != nil || ms != 1700000000000 || seq != 42 {
		t.Errorf("ParseStreamID = %d, %d, %v", ms, seq, err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
