package pgaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

func names[T any](s []T, name func(T) string) []string {
	var out []string
	for _, x := range s {
		out = append(out, name(x))
	}
	return out
}

func rowName(r pgaudit.Row) string         { return r.Resource.String() }
func leaseName(l coordinator.Lease) string { return l.Resource.String() }

func TestDiagnoseCountsStaleMissingLongHeldAndLag(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)

	// nothing has run yet: every entry is undelivered, the group missing
	rd.mustAcquire(t, coordinator.Plan("early"), "w0", time.Hour)
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lag.Undelivered != 1 || r.Lag.Entries != 1 || len(r.Lag.Partitions) != 4 || r.MissingCount != 0 {
		t.Fatalf("before the mirror ran: %+v", r)
	}
	for _, p := range r.Lag.Partitions {
		if !p.NoGroup {
			t.Fatalf("partition %d has the group before the mirror ran", p.Partition)
		}
	}
	if err := rd.release(t, coordinator.Plan("early"), "w0", true); err != nil {
		t.Fatal(err)
	}

	long := coordinator.Project("long")
	rd.mustAcquire(t, long, "w1", time.Hour)
	for range 4 {
		rd.advance(30 * time.Minute)
		if err := rd.renew(t, long, "w1", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	rd.mustAcquire(t, coordinator.Plan("alive"), "w2", time.Hour)
	rd.mustAcquire(t, coordinator.Plan("stale1"), "w3", 5*time.Second)
	rd.mustAcquire(t, coordinator.Plan("stale2"), "w3", 5*time.Second)
	drain(t, m)
	rd.advance(6 * time.Second)
	rd.mustAcquire(t, coordinator.Plan("missing"), "w4", time.Hour)
	rd.advance(20 * time.Second)
	rd.mustAcquire(t, coordinator.Plan("fresh"), "w5", time.Hour) // within the grace

	r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !r.At.Equal(rd.now) || r.Prefix != rd.store.Layout().Prefix() || r.Partitions != 4 || r.Group != pgaudit.DefaultGroup ||
		r.HoldBudget != pgaudit.DefaultHoldBudget {
		t.Errorf("header: %+v", r)
	}
	if r.LeasesHeld != 4 || r.RowsMirrored != 4 {
		t.Errorf("leases held %d, rows %d; want 4, 4", r.LeasesHeld, r.RowsMirrored)
	}
	if r.StaleCount != 2 || len(r.Stale) != 1 || r.Stale[0].Owner != "w3" {
		t.Errorf("stale %d %v, want 2, one listed", r.StaleCount, names(r.Stale, rowName))
	}
	if r.MissingCount != 1 || len(r.Missing) != 1 || r.Missing[0].Resource != coordinator.Plan("missing") {
		t.Errorf("missing %d %v, want plan/missing", r.MissingCount, names(r.Missing, leaseName))
	}
	if r.LongHeldCount != 1 || r.LongHeld[0].Resource != long {
		t.Errorf("long held %d %v, want project/long", r.LongHeldCount, names(r.LongHeld, leaseName))
	}
	if r.Lag.Entries != 2 || r.Lag.Undelivered != 2 || r.Lag.Pending != 0 || r.Lag.Oldest != 20*time.Second {
		t.Errorf("lag %+v, want 2 entries undelivered, the oldest 20s old", r.Lag)
	}

	// a consumer reads an entry and does not acknowledge it
	res, err := rd.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: m.Group(), Consumer: "slow",
		Streams: []string{rd.store.Layout().StreamKey(rd.store.Layout().Partition(coordinator.Plan("missing"))), ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res[0].Messages) != 1 {
		t.Fatal(res, err)
	}
	rd.tick(time.Second)
	r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{Limit: -1, HoldBudget: -1, MissingGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.StaleCount != 2 || len(r.Stale) != 2 || r.LongHeldCount != 0 || r.HoldBudget != 0 || r.MissingCount != 2 {
		t.Errorf("unlimited, no budget, no grace: stale %d/%d, long held %d, missing %d", len(r.Stale), r.StaleCount,
			r.LongHeldCount, r.MissingCount)
	}
	if r.Lag.Undelivered != 1 || r.Lag.Pending != 1 || r.Lag.Oldest != 21*time.Second {
		t.Errorf("lag %+v, want 1 undelivered, 1 pending, the oldest 21s old", r.Lag)
	}
	if !r.Healthy(pgaudit.Thresholds{MaxStale: -1, MaxMissing: -1, MaxLongHeld: -1, MaxUndelivered: -1, MaxPending: -1, MaxLag: -1}) {
		t.Error("unhealthy with every check off")
	}
	problems := r.Problems(pgaudit.Thresholds{MaxLag: time.Second})
	if len(problems) != 5 || r.ExitCode(pgaudit.DefaultThresholds()) != pgaudit.ExitUnhealthy {
		t.Errorf("problems %q, exit %d", problems, r.ExitCode(pgaudit.DefaultThresholds()))
	}

	// after catching up and cleaning up: healthy
	drain(t, m) // the slow consumer's entry is not idle yet
	rd.tick(time.Minute)
	drain(t, m)
	if _, err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Healthy(pgaudit.DefaultThresholds()) || r.ExitCode(pgaudit.DefaultThresholds()) != pgaudit.ExitHealthy ||
		r.StaleCount != 0 || r.MissingCount != 0 || r.Lag.Entries != 0 || r.LeasesHeld != r.RowsMirrored {
		t.Errorf("after catching up: %+v, problems %q", r, r.Problems(pgaudit.DefaultThresholds()))
	}
}

func TestDiagnoseOnRealRedisCountsLag(t *testing.T) {
	pg, rd := newDB(t), newReal(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd, pgaudit.WithTrimInterval(-1))
	for i := range 10 {
		rd.mustAcquire(t, coordinator.Plan(itoa(i)), "w", time.Hour)
	}
	drain(t, m)
	for i := range 7 {
		rd.mustAcquire(t, coordinator.Plan("n"+itoa(i)), "w", time.Hour)
	}
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lag.Entries != 17 || r.Lag.Undelivered != 7 || r.Lag.Pending != 0 || r.MissingCount != 7 || r.LeasesHeld != 17 {
		t.Fatalf("lag %+v, missing %d, held %d; want 17 entries, 7 undelivered and missing, 17 held", r.Lag, r.MissingCount, r.LeasesHeld)
	}
	drain(t, m)
	if r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1}); err != nil || r.Lag.Undelivered != 0 || r.MissingCount != 0 {
		t.Fatalf("after draining: %+v, %v", r, err)
	}
}

func sampleReport() pgaudit.Report {
	at := time.Date(2030, 1, 2, 3, 4, 5, 678e6, time.UTC)
	lease := func(id string, acquired time.Duration) coordinator.Lease {
		return coordinator.Lease{Resource: coordinator.Plan(id), Owner: "worker-1", Token: 1893553445678000, Count: 2,
			AcquiredAt: at.Add(-acquired), ExpiresAt: at.Add(time.Minute)}
	}
	return pgaudit.Report{At: at, Prefix: "lockcoord", Partitions: 16, Group: "lockcoord-mirror", HoldBudget: time.Hour,
		LeasesHeld: 3, RowsMirrored: 3,
		StaleCount: 2, Stale: []pgaudit.Row{{Resource: coordinator.Project("7"), Owner: "worker-9", Token: 1893550000000000,
			Count: 1, AcquiredAt: at.Add(-10 * time.Minute), RenewedAt: at.Add(-9 * time.Minute),
			ExpiresAt: at.Add(-5 * time.Minute), LastEventID: "1893553000000-0"}},
		MissingCount: 1, Missing: []coordinator.Lease{lease("42", time.Minute)},
		LongHeldCount: 1, LongHeld: []coordinator.Lease{lease("1", 2*time.Hour)},
		Lag: pgaudit.Lag{Entries: 120, Undelivered: 3, Pending: 2, Oldest: 1500 * time.Millisecond,
			Partitions: []pgaudit.PartitionLag{{Partition: 5, Entries: 10, Undelivered: 3, Pending: 2, Oldest: 1500 * time.Millisecond},
				{Partition: 9, NoGroup: true}}},
	}
}

func TestReportTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"prefix lockcoord, 16 partitions, group lockcoord-mirror, redis time 2030-01-02T03:04:05.678Z",
		"stale leases                2\n",
		"held longer than 1h0m0s     1\n",
		"oldest unacknowledged       1.5s\n",
		"project/7  worker-9  1893550000000000  1      2030-01-02T02:54:05.678Z  2030-01-02T02:59:05.678Z",
		"… and 1 more",
		"MISSING FROM THE MIRROR",
		"plan/42   worker-1  1893553445678000  2      2030-01-02T03:03:05.678Z  1m0s",
		"plan/1    worker-1  1893553445678000  2      2030-01-02T01:04:05.678Z  2h0m0s",
		"5          10       3         2        1.5s    yes",
		"9          0        0         0        0s      missing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var empty bytes.Buffer
	if err := (pgaudit.Report{}).WriteTable(&empty); err != nil || strings.Contains(empty.String(), "RESOURCE") ||
		!strings.Contains(empty.String(), "held longer than off") {
		t.Errorf("empty report:\n%s", empty.String())
	}
}

func TestReportJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		At           time.Time `json:"at"`
		HoldBudgetMS int64     `json:"hold_budget_ms"`
		LeasesHeld   int       `json:"leases_held"`
		Stale        struct {
			Count  int `json:"count"`
			Leases []struct {
				Resource    string `json:"resource"`
				Token       string `json:"token"`
				LastEventID string `json:"last_event_id"`
			} `json:"leases"`
		} `json:"stale"`
		Missing struct {
			Leases []struct {
				HeldMS int64 `json:"held_ms"`
			} `json:"leases"`
		} `json:"missing"`
		Lag struct {
			Pending    int64 `json:"pending"`
			OldestMS   int64 `json:"oldest_unacked_ms"`
			Partitions []struct {
				Partition int  `json:"partition"`
				Group     bool `json:"group"`
			} `json:"partitions"`
		} `json:"lag"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if got.HoldBudgetMS != 3_600_000 || got.LeasesHeld != 3 || got.Stale.Count != 2 || got.Stale.Leases[0].Token != "1893550000000000" ||
		got.Stale.Leases[0].LastEventID != "1893553000000-0" || got.Missing.Leases[0].HeldMS != 60_000 ||
		got.Lag.OldestMS != 1500 || got.Lag.Pending != 2 || len(got.Lag.Partitions) != 2 || got.Lag.Partitions[1].Group ||
		!got.At.Equal(sampleReport().At) {
		t.Errorf("JSON decoded to %+v:\n%s", got, b.String())
	}
	empty, err := json.Marshal(pgaudit.Report{})
	if err != nil || !strings.Contains(string(empty), `"leases":[]`) || !strings.Contains(string(empty), `"partitions":[]`) {
		t.Errorf("empty report: %s, %v", empty, err)
	}
	if err := sampleReport().WriteJSON(failingWriter{}); err == nil {
		t.Error("WriteJSON to a failing writer succeeded")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

var errWrite = &json.UnsupportedValueError{Str: "write failed"}

// TestReportRedisConfig: a Redis that can evict leases, or whose policy
// cannot be read, is a problem of the report (issue 12 item 1); its
// table and JSON show each server's policy and persistence.
func TestReportRedisConfig(t *testing.T) {
	r := pgaudit.Report{Redis: []redisstore.ServerConfig{
		{Addr: "a:1", Policy: "noeviction", PolicyFrom: redisstore.FromConfig, PersistenceKnown: true, AOF: true},
		{Addr: "b:2", Policy: "volatile-lru", PolicyFrom: redisstore.FromInfo},
		{Addr: "c:3", ConfigErr: "NOPERM", InfoErr: "NOPERM"},
	}}
	p := strings.Join(r.Problems(pgaudit.DefaultThresholds()), "\n")
	if strings.Contains(p, "a:1") || !strings.Contains(p, "b:2: maxmemory-policy volatile-lru can evict leases") ||
		!strings.Contains(p, "c:3: cannot read maxmemory-policy") || r.Healthy(pgaudit.DefaultThresholds()) {
		t.Errorf("problems: %s", p)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"redis a:1", "maxmemory-policy noeviction, persistence aof", "maxmemory-policy unknown, persistence unknown"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(r)
	if err != nil || !strings.Contains(string(js), `"redis":[{"addr":"a:1"`) || !strings.Contains(string(js), `"maxmemory_policy":"volatile-lru"`) {
		t.Errorf("JSON: %s, %v", js, err)
	}
}
