package pgaudit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// fillBacklog appends n events to the streams the way the scripts do:
// leases on 5,000 resources, each acquired, re-entered, renewed,
// decremented and (four in five) released. round keeps tokens growing
// from one call to the next.
func fillBacklog(tb testing.TB, rd *redisEnv, n, round int) {
	tb.Helper()
	ctx := context.Background()
	pipe := rd.client.Pipeline()
	now := time.Now().UnixMilli()
	added := 0
	for lease := 0; added < n; lease++ {
		r := coordinator.Resource{Type: "job", ID: "j" + strconv.Itoa(lease%5000)}
		stream := rd.store.Layout().StreamKey(rd.store.Layout().Partition(r))
		token := strconv.Itoa((round+1)*10_000_000 + lease)
		acquired := now + int64(lease)
		steps := []struct {
			event string
			count int
		}{{"acquired", 1}, {"reentered", 2}, {"renewed", 2}, {"decremented", 1}, {"released", 0}}
		if lease%5 == 4 {
			steps = steps[:4]
		}
		for i, s := range steps {
			if added == n {
				break
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"event", s.event, "type", r.Type, "id", r.ID,
				"owner", "worker-" + strconv.Itoa(lease%16), "token", token, "count", strconv.Itoa(s.count),
				"at", strconv.FormatInt(acquired+int64(i), 10), "acquired_at", strconv.FormatInt(acquired, 10),
				"expires_at", strconv.FormatInt(acquired+60_000+int64(i), 10), "req", "req-" + token + "-" + strconv.Itoa(i)}})
			added++
		}
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkMirrorDrain measures how fast the mirror applies a backlog of
// 50,000 events (16 partitions, default batch size) into Postgres: read,
// ledger, mirror, acknowledge and trim.
func BenchmarkMirrorDrain(b *testing.B) {
	pg, rd := newDB(b), newReal(b, redisstore.WithPartitions(16))
	const backlog = 50_000
	m := pgaudit.NewMirror(pg.pool, rd.store)
	events, round := 0, 0
	for b.Loop() {
		b.StopTimer()
		fillBacklog(b, rd, backlog, round)
		round++
		b.StartTimer()
		n, err := m.Drain(context.Background())
		if err != nil || n != backlog {
			b.Fatalf("Drain = %d, %v; want %d", n, err, backlog)
		}
		events += n
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	if got := pg.count(b, "SELECT count(*) FROM lock_events"); got != events {
		b.Fatalf("ledger has %d rows, want %d", got, events)
	}
}

// BenchmarkMirrorSteadyLag feeds the streams 10,000 lease changes a second
// for three seconds while a mirror runs, and reports the largest lag seen
// (age of the oldest entry of a batch when the batch was applied) and the
// time to catch up once the feed stops.
func BenchmarkMirrorSteadyLag(b *testing.B) {
	pg, rd := newDB(b), newReal(b, redisstore.WithPartitions(16))
	const rate, feed, tick = 10_000, 3 * time.Second, 10 * time.Millisecond
	m := pgaudit.NewMirror(pg.pool, rd.store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var maxLag, catchUp, fed time.Duration
	sent, round := 0, 0
	for b.Loop() {
		began := time.Now()
		stop := began.Add(feed)
		t := time.NewTicker(tick)
		for now := range t.C {
			if now.After(stop) {
				break
			}
			fillBacklog(b, rd, rate*int(tick)/int(time.Second), round)
			round++
			sent += rate * int(tick) / int(time.Second)
			maxLag = max(maxLag, time.Duration(testutil.ToFloat64(m.MetricsLag())*float64(time.Second)))
		}
		t.Stop()
		fed += time.Since(began)
		start := time.Now()
		for pg.count(b, "SELECT count(*) FROM lock_events") < sent {
			maxLag = max(maxLag, time.Duration(testutil.ToFloat64(m.MetricsLag())*float64(time.Second)))
			time.Sleep(5 * time.Millisecond)
		}
		catchUp = max(catchUp, time.Since(start))
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(sent)/fed.Seconds(), "events/s-fed")
	b.ReportMetric(float64(maxLag.Milliseconds()), "max-lag-ms")
	b.ReportMetric(float64(catchUp.Milliseconds()), "catch-up-ms")
}
