package pgaudit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestStreamIDHelpers(t *testing.T) {
	for in, want := range map[string]string{"5-3": "5-4", "0-0": "0-1", "7-18446744073709551615": "8-0",
		// ids past 2^63 (issue 12 item 8), and the last id there is
		"18446744073709551615-7":                    "18446744073709551615-8",
		"18446744073709551615-18446744073709551615": "18446744073709551615-18446744073709551615", "junk": "junk"} {
		if got := pgaudit.NextID(in); got != want {
			t.Errorf("NextID(%s) = %s, want %s", in, got, want)
		}
	}
	for _, c := range [][3]string{{"", "2-0", "2-0"}, {"2-0", "", "2-0"}, {"10-0", "9-5", "9-5"}, {"9-5", "9-10", "9-5"},
		{"18446744073709551615-5", "18446744073709551615-3", "18446744073709551615-3"},
		{"9223372036854775808-0", "9223372036854775807-9", "9223372036854775807-9"}} {
		if got := pgaudit.LowerID(c[0], c[1]); got != c[2] {
			t.Errorf("LowerID(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestTrimKeepsWhatAnyGroupStillNeeds(t *testing.T) {
	pg, rd := newDB(t), newMini(t, redisstore.WithPartitions(1))
	ctx := context.Background()
	stream := rd.store.Layout().StreamKey(0)
	// another group (another database's mirror) that has read nothing
	if err := rd.client.XGroupCreateMkStream(ctx, stream, "other", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		rd.mustAcquire(t, coordinator.Plan(itoa(i)), "w", time.Hour)
	}
	m := mirror(pg.pool, rd, pgaudit.WithTrimInterval(0))
	drain(t, m)
	if n := rd.streamLen(t); n != 6 {
		t.Fatalf("trimmed to %d entries while the other group had read none", n)
	}
	// the other group reads 4, acknowledges the first 2
	res, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "other", Consumer: "o", Streams: []string{stream, ">"},
		Count: 4, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	msgs := res[0].Messages
	if err := rd.client.XAck(ctx, stream, "other", msgs[0].ID, msgs[1].ID).Err(); err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	left, _ := rd.client.XRange(ctx, stream, "-", "+").Result()
	if len(left) != 4 || left[0].ID != msgs[2].ID {
		t.Fatalf("after the other group acknowledged 2 of 4: %d entries left, first %v", len(left), left)
	}
	// everything read and acknowledged by both: the stream empties
	if err := rd.client.XAck(ctx, stream, "other", msgs[2].ID, msgs[3].ID).Err(); err != nil {
		t.Fatal(err)
	}
	res, _ = rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "other", Consumer: "o", Streams: []string{stream, ">"},
		Count: 10, Block: -1}).Result()
	for _, msg := range res[0].Messages {
		rd.client.XAck(ctx, stream, "other", msg.ID)
	}
	drain(t, m)
	if n := rd.streamLen(t); n != 0 {
		t.Fatalf("%d entries left after every group acknowledged all", n)
	}
	if got := promtest.ToFloat64(m.MetricsTrimmed()); got != 6 {
		t.Fatalf("trimmed metric %v, want 6", got)
	}
}

func TestMalformedEntriesAreDeadLetteredAndAcknowledged(t *testing.T) {
	pg, rd := newDB(t), newMini(t, redisstore.WithPartitions(1))
	ctx := context.Background()
	stream := rd.store.Layout().StreamKey(0)
	// a token past 2^53 (a float64 would round it) is kept exactly
	good := map[string]any{"event": "acquired", "type": "plan", "id": "1", "owner": "w", "token": "1152921504606846977", "count": "1",
		"at": "5", "acquired_at": "5", "expires_at": "100", "req": "r"}
	with := func(k, v string) map[string]any {
		out := map[string]any{}
		for a, b := range good {
			out[a] = b
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	bad := []map[string]any{with("event", "exploded"), with("owner", ""), with("token", "x"), with("token", "0"),
		with("token", "9223372036854775808"),
		with("count", "-1"), with("expires_at", "99999999999999999999"),
		// times Postgres would store wrapped (9223372036854775807 became
		// 1969-12-31), or beyond the year 9999
		with("at", "9223372036854775807"), with("expires_at", "253402300800000"), with("acquired_at", "-1")}
	for _, v := range bad {
		if err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: good}).Err(); err != nil {
		t.Fatal(err)
	}
	m := mirror(pg.pool, rd, pgaudit.WithTrimInterval(-1))
	if n := drain(t, m); n != 1 {
		t.Fatalf("applied %d events, want the good one", n)
	}
	if got := promtest.ToFloat64(m.MetricsMalformed()); got != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", got, len(bad))
	}
	dead := pg.deadLetters(t)
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	for i, d := range dead {
		fields := map[string]any{}
		for _, f := range d.fields {
			fields[f[0]] = f[1]
		}
		if fmt.Sprint(fields) != fmt.Sprint(bad[i]) || !strings.HasPrefix(d.reason, "malformed: entry "+d.streamID) {
			t.Errorf("dead letter %d: %v %q, want %v", i, fields, d.reason, bad[i])
		}
	}
	if !strings.Contains(dead[len(dead)-3].reason, `"at" = "9223372036854775807": want a time`) {
		t.Errorf("reason for an out-of-range time: %q", dead[len(dead)-3].reason)
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE token = 1152921504606846977"); n != 1 {
		t.Fatalf("%d ledger rows, want the good entry's, token intact", n)
	}
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE token = 1152921504606846977"); n != 1 {
		t.Fatalf("%d mirror rows, want the good entry's, token intact", n)
	}
	if x, _ := rd.client.XPending(ctx, stream, m.Group()).Result(); x.Count != 0 {
		t.Fatalf("%d entries left pending", x.Count)
	}
}

func TestEntriesTrimmedBeforeTheyWereAppliedAreCountedLost(t *testing.T) {
	pg, rd := newDB(t), newReal(t, redisstore.WithPartitions(1))
	ctx := context.Background()
	stream := rd.store.Layout().StreamKey(0)
	for i := range 4 {
		rd.mustAcquire(t, coordinator.Plan(itoa(i)), "w", time.Hour)
	}
	// a consumer reads all four and dies; two of them are deleted (as the
	// MAXLEN cap would) before anyone applies them
	a := mirror(pg.pool, rd, pgaudit.WithConsumer("a"))
	if err := rd.client.XGroupCreateMkStream(ctx, stream, a.Group(), "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: a.Group(), Consumer: "a", Streams: []string{stream, ">"},
		Count: 2, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	res2, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: a.Group(), Consumer: "dead", Streams: []string{stream, ">"},
		Count: 2, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.client.XDel(ctx, stream, res[0].Messages[0].ID, res2[0].Messages[0].ID).Err(); err != nil {
		t.Fatal(err)
	}
	// a (restarted) finds one of its own gone; it claims the dead
	// consumer's and finds one gone
	a = mirror(pg.pool, rd, pgaudit.WithConsumer("a"), pgaudit.WithClaimIdle(time.Millisecond))
	testutil.Eventually(t, 10*time.Second, "the pending entries idle for the claim", func() bool {
		idle, err := rd.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: a.Group(),
			Idle: time.Millisecond, Start: "-", End: "+", Count: 100}).Result()
		return err == nil && len(idle) == 4
	})
	drain(t, a)
	if got := promtest.ToFloat64(a.MetricsLost()); got != 2 {
		t.Fatalf("lost %v, want 2", got)
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events"); n != 2 {
		t.Fatalf("%d ledger rows, want the 2 entries left", n)
	}
	if x, _ := rd.client.XPending(ctx, stream, a.Group()).Result(); x.Count != 0 {
		t.Fatalf("%d entries left pending", x.Count)
	}
}

func TestMirrorOnRedisCluster(t *testing.T) {
	pg := newDB(t)
	rd := newMini(t, redisstore.WithNotifications(false))
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{rd.mr.Addr()}})
	t.Cleanup(func() { _ = cc.Close() })
	rd.client = cc
	rd.store = redisstore.New(cc, redisstore.WithPartitions(4), redisstore.WithNotifications(false))
	if !rd.store.Cluster() {
		t.Fatal("not a cluster store")
	}
	ctx := context.Background()
	w := newWorkload(rd, 9, 12, 3, false)
	for range 150 {
		w.step(t)
	}
	m := mirror(pg.pool, rd, pgaudit.WithBatchSize(5), pgaudit.WithTrimInterval(-1))
	drain(t, m)
	ledgerMatches(t, pg, rd.entries(t))
	sameLeases(t, rd, pg)
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil || r.LeasesHeld != len(rd.redisLeases(t)) || r.LeasesHeld == 0 || r.MissingCount != 0 || r.Lag.Undelivered != 0 {
		t.Fatalf("Diagnose on Cluster: %+v, %v", r, err)
	}
	// Run polls each partition while idle
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	rd.mustAcquire(t, coordinator.Plan("late"), "w", time.Hour)
	total := rd.streamLen(t)
	testutil.Eventually(t, 10*time.Second, "the mirror to apply the new event", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == total
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMetricsRegistration(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	reg := prometheus.NewRegistry()
	a := mirror(pg.pool, rd, pgaudit.WithMetrics(reg))
	b := mirror(pg.pool, rd, pgaudit.WithMetrics(reg)) // shares a's collectors
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	drain(t, a)
	if promtest.ToFloat64(b.MetricsApplied("acquired")) != 1 {
		t.Fatal("the second mirror does not share the first's collectors")
	}
	if n, err := promtest.GatherAndCount(reg); err != nil || n < 11 {
		t.Fatalf("gathered %d metrics, %v", n, err)
	}
	// a registry holding other collectors under the same names
	clash := prometheus.NewRegistry()
	for _, name := range []string{"events_applied_total", "events_duplicate_total", "batch_size", "lag_seconds"} {
		clash.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lockcoord", Subsystem: "mirror",
			Name: name, Help: "something else"}, func() float64 { return 0 }))
	}
	if err := mirror(pg.pool, rd, pgaudit.WithMetrics(clash)).Run(context.Background()); err == nil {
		t.Fatal("Run with clashing metrics succeeded")
	}
}

func TestRunStopsOnCancelAndRejectsAPartitionMismatch(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	other := redisstore.New(rd.client, redisstore.WithPartitions(8))
	if err := other.CheckPartitions(context.Background()); err != nil {
		t.Fatal(err)
	}
	// the prefix is recorded with 8 partitions, the mirror's store has 4
	if err := mirror(pg.pool, rd).Run(context.Background()); !errors.Is(err, redisstore.ErrPartitionMismatch) {
		t.Fatalf("Run = %v, want ErrPartitionMismatch", err)
	}
	if _, err := mirror(pg.pool, rd).Drain(context.Background()); !errors.Is(err, redisstore.ErrPartitionMismatch) {
		t.Fatalf("Drain = %v, want ErrPartitionMismatch", err)
	}
	// a cancelled context: Run returns nil, promptly
	rd2 := newMini(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m := mirror(pg.pool, rd2, pgaudit.WithBlock(time.Second))
	go func() { done <- m.Run(ctx) }()
	rd2.mustAcquire(t, coordinator.Plan("x"), "w", time.Hour)
	testutil.Eventually(t, 5*time.Second, "the event", func() bool { return pg.count(t, "SELECT count(*) FROM locks") == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestRunWaitsForRedisAndRecreatesLostGroups(t *testing.T) {
	pg := newDB(t)
	rd := newReal(t)
	srv := rd.srv
	srv.Kill()
	reg := prometheus.NewRegistry()
	m := mirror(pg.pool, rd, pgaudit.WithMetrics(reg), pgaudit.WithTrimInterval(0), pgaudit.WithCleanupInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "a retry", func() bool { return promtest.ToFloat64(m.MetricsRetries()) > 0 })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	testutil.Eventually(t, 10*time.Second, "the first event", func() bool { return pg.count(t, "SELECT count(*) FROM lock_events") == 1 })
	// the stream ids so far are at most Redis's clock now
	before, err := rd.client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis restarts without its data: the groups are gone
	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// the next stream ids must pass the old ones, as they do after a real
	// restart, which takes longer than a millisecond
	testutil.Eventually(t, 10*time.Second, "Redis's clock past the first event's stream id", func() bool {
		now, err := rd.client.Time(ctx).Result()
		return err == nil && now.UnixMilli() > before.UnixMilli()
	})
	rd.mustAcquire(t, coordinator.Plan("2"), "w", time.Hour)
	testutil.Eventually(t, 10*time.Second, "the event after the restart", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPostgresDownAtShutdownLeavesTheBatchPending(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	const app = "lockcoord-mirror-down"
	m := mirror(pg.newPool(t, app), rd, pgaudit.WithConsumer("a"), pgaudit.WithDrainTimeout(200*time.Millisecond),
		pgaudit.WithCleanupInterval(-1), pgaudit.WithApplyTimeout(time.Second))
	pg.AdminExec(t, "ALTER DATABASE "+pg.Name+" ALLOW_CONNECTIONS false")
	pg.AdminExec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2", pg.Name, app)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	rd.mustAcquire(t, coordinator.Plan("1"), "w", time.Hour)
	testutil.Eventually(t, 10*time.Second, "a failed apply", func() bool { return promtest.ToFloat64(m.MetricsRetries()) >= 2 })
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run took %v to stop with Postgres down", d)
	}
	x, err := rd.client.XPending(context.Background(), rd.store.Layout().StreamKey(rd.store.Layout().Partition(coordinator.Plan("1"))), m.Group()).Result()
	if err != nil || x.Count != 1 {
		t.Fatalf("pending %+v, %v; want the entry still pending", x, err)
	}
	// Drain also gives up once its context is done
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	if _, err := m.Drain(dctx); err == nil {
		t.Fatal("Drain with Postgres down succeeded")
	}
	if _, err := m.Cleanup(context.Background()); err == nil {
		t.Fatal("Cleanup with Postgres down succeeded")
	}
	if _, err := m.Diagnose(context.Background(), pgaudit.DiagnoseOptions{}); err == nil {
		t.Fatal("Diagnose with Postgres down succeeded")
	}
	pg.AdminExec(t, "ALTER DATABASE "+pg.Name+" ALLOW_CONNECTIONS true")
	drain(t, m)
	sameLeases(t, rd, pg)
}
