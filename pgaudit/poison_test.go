package pgaudit_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// deadLetter is a row of lock_dead_letters.
type deadLetter struct {
	partition int
	streamID  string
	streamKey string
	group     string
	fields    [][2]string // decoded: a {"hex": ...} value as its bytes
	reason    string
	resolved  bool
}

// deadLetters reads lock_dead_letters, in stream order.
func (e *pgEnv) deadLetters(t testing.TB) []deadLetter {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT partition, stream_id, stream_key, consumer_group, fields, reason,
		resolved_at IS NOT NULL FROM lock_dead_letters ORDER BY partition, stream_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []deadLetter
	for rows.Next() {
		var d deadLetter
		var raw []byte
		if err := rows.Scan(&d.partition, &d.streamID, &d.streamKey, &d.group, &raw, &d.reason, &d.resolved); err != nil {
			t.Fatal(err)
		}
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(raw, &pairs); err != nil {
			t.Fatalf("fields %s: %v", raw, err)
		}
		for _, p := range pairs {
			d.fields = append(d.fields, [2]string{decodeField(t, p[0]), decodeField(t, p[1])})
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeField reads a field name or value of lock_dead_letters.fields: a
// JSON string, or {"hex": "..."} for bytes that are not text.
func decodeField(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var h struct{ Hex string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("field %s: %v", raw, err)
	}
	b, err := hex.DecodeString(h.Hex)
	if err != nil {
		t.Fatalf("field %s: %v", raw, err)
	}
	return string(b)
}

// scriptFields are the fields of an acquired event as acquire.lua writes
// them, in its order.
func scriptFields(id, owner string, token int64) []string {
	now := time.Now().UnixMilli()
	return []string{"event", "acquired", "type", "plan", "id", id, "owner", owner,
		"token", itoa(int(token)), "count", "1", "at", itoa(int(now)), "acquired_at", itoa(int(now)),
		"expires_at", itoa(int(now + 3600_000)), "req", "r-" + id}
}

func pairsOf(fields []string) [][2]string {
	var out [][2]string
	for i := 0; i+1 < len(fields); i += 2 {
		out = append(out, [2]string{fields[i], fields[i+1]})
	}
	return out
}

// Issue 12 item 7: an entry Postgres rejects (an owner that is not UTF-8,
// a NUL in an id, an id too long for the ledger's index) made the whole
// batch fail, across partitions, and the mirror retried it for ever.
func TestPoisonEntriesAreDeadLetteredAndTheRestApplied(t *testing.T) {
	pg, rd := newDB(t), newReal(t)
	ctx := context.Background()
	long := make([]byte, 7500)
	_, _ = rand.Read(long)
	poison := map[string][]string{ // partition's stream -> fields, interleaved with real events
		"owner not UTF-8": scriptFields("p1", "w\xff\xfe", 9_000_000_000_001),
		"NUL in the id":   scriptFields("p\x002", "w", 9_000_000_000_002),
		"id too long":     scriptFields(base64.StdEncoding.EncodeToString(long), "w", 9_000_000_000_003),
	}
	var order []string
	for what := range poison {
		order = append(order, what)
	}
	slices.Sort(order)
	for i := range 40 {
		rd.mustAcquire(t, coordinator.Plan(itoa(i)), "worker-"+itoa(i%3), time.Hour)
		if i%10 == 5 && len(order) > 0 {
			what := order[0]
			order = order[1:]
			p := i % rd.store.Layout().Partitions()
			if err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: rd.store.Layout().StreamKey(p), Values: poison[what]}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	reg := prometheus.NewRegistry()
	m := mirror(pg.pool, rd, pgaudit.WithMetrics(reg), pgaudit.WithTrimInterval(-1))
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second) // fails the test instead of retrying for ever
	defer cancel()
	n, err := m.Drain(dctx)
	if err != nil {
		t.Fatalf("drain: %v (applied %d)", err, n)
	}
	if n != 40 {
		t.Fatalf("applied %d events, want the 40 real ones", n)
	}
	var real []entry
	for _, e := range rd.entries(t) {
		if !strings.HasPrefix(e.fields["token"], "9000000000") {
			real = append(real, e)
		}
	}
	ledgerMatches(t, pg, real)
	sameLeases(t, rd, pg)

	dead := pg.deadLetters(t)
	if len(dead) != len(poison) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(poison), dead)
	}
	for _, d := range dead {
		msgs, err := rd.client.XRange(ctx, rd.store.Layout().StreamKey(d.partition), d.streamID, d.streamID).Result()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("dead letter %d/%s is not an entry of its stream: %v %v", d.partition, d.streamID, msgs, err)
		}
		var want []string
		for what, f := range poison {
			if f[5] == msgs[0].Values["id"] {
				want = f
				t.Logf("%s: %s", what, d.reason)
			}
		}
		if !slices.Equal(d.fields, pairsOf(want)) {
			t.Errorf("dead letter %d/%s keeps %q, want the entry whole: %q", d.partition, d.streamID, d.fields, pairsOf(want))
		}
		if d.streamKey != rd.store.Layout().StreamKey(d.partition) || d.group != m.Group() || d.reason == "" || d.resolved {
			t.Errorf("dead letter %+v", d)
		}
	}
	if got := testutil.ToFloat64(m.MetricsDeadLettered()); got != float64(len(poison)) {
		t.Errorf("dead-letter metric %v, want %d", got, len(poison))
	}
	for p := range rd.store.Layout().Partitions() {
		if x, _ := rd.client.XPending(ctx, rd.store.Layout().StreamKey(p), m.Group()).Result(); x.Count != 0 {
			t.Errorf("partition %d: %d entries left pending", p, x.Count)
		}
	}
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.DeadLetterCount != len(poison) || len(r.DeadLetters) != len(poison) || r.Healthy(pgaudit.DefaultThresholds()) {
		t.Fatalf("diagnostics: %d dead letters %v, healthy %v, problems %q", r.DeadLetterCount, r.DeadLetters,
			r.Healthy(pgaudit.DefaultThresholds()), r.Problems(pgaudit.DefaultThresholds()))
	}
	// a second drain finds nothing more to do, and records nothing twice
	if n := drain(t, m); n != 0 || len(pg.deadLetters(t)) != len(poison) {
		t.Fatalf("second drain applied %d, dead letters %d", n, len(pg.deadLetters(t)))
	}
}

// Issue 12 item 8: after an entry at the largest stream id every later
// entry of the stream has that id's milliseconds; the mirror took the
// scripts' real events for malformed, acknowledged and dropped them.
func TestEntriesAfterTheLargestStreamIDAreApplied(t *testing.T) {
	pg, rd := newDB(t), newReal(t, redisstore.WithPartitions(1))
	ctx := context.Background()
	stream := rd.store.Layout().StreamKey(0)
	rd.mustAcquire(t, coordinator.Plan("before"), "w", time.Hour)
	if err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: "18446744073709551615-0",
		Values: []string{"note", "written by hand"}}).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		rd.mustAcquire(t, coordinator.Plan(itoa(i)), "w", time.Hour)
	}
	if err := rd.renew(t, coordinator.Plan("3"), "w", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	m := mirror(pg.pool, rd, pgaudit.WithTrimInterval(-1))
	if n := drain(t, m); n != 12 {
		t.Fatalf("applied %d events, want the 12 the scripts wrote", n)
	}
	for i := range 5 {
		if err := rd.release(t, coordinator.Plan(itoa(i)), "w", true); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.renew(t, coordinator.Plan("7"), "w", 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := drain(t, m); n != 6 {
		t.Fatalf("applied %d events, want 6", n)
	}
	var real []entry
	for _, e := range rd.entries(t) {
		if e.fields["note"] == "" {
			real = append(real, e)
		}
	}
	ledgerMatches(t, pg, real)
	sameLeases(t, rd, pg)
	dead := pg.deadLetters(t)
	if len(dead) != 1 || dead[0].streamID != "18446744073709551615-0" ||
		!slices.Equal(dead[0].fields, [][2]string{{"note", "written by hand"}}) {
		t.Fatalf("dead letters %+v, want the hand-written entry", dead)
	}
	if x, _ := rd.client.XPending(ctx, stream, m.Group()).Result(); x.Count != 0 {
		t.Fatalf("%d entries left pending", x.Count)
	}
	// the mirror still orders the events of one lease: the renewal of 7 is
	// in its row
	var exp time.Time
	if err := pg.pool.QueryRow(ctx, "SELECT expires_at FROM locks WHERE resource_id = '7'").Scan(&exp); err != nil {
		t.Fatal(err)
	}
	for _, l := range rd.redisLeases(t) {
		if l.Resource == "plan/7" && exp.UnixMilli() != l.ExpiresAt {
			t.Fatalf("row of plan/7 expires at %d, Redis says %d", exp.UnixMilli(), l.ExpiresAt)
		}
	}
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lag.Oldest != 0 || r.Lag.Pending != 0 || r.DeadLetterCount != 1 {
		t.Fatalf("diagnostics after the largest id: %+v", r)
	}
}
