package pgaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestReplayDeadLetters(t *testing.T) {
	pg, rd := newDB(t), newReal(t, redisstore.WithPartitions(1))
	ctx := context.Background()
	stream := rd.store.Layout().StreamKey(0)
	xadd := func(fields ...string) string {
		t.Helper()
		id, err := rd.client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	rd.mustAcquire(t, coordinator.Plan("real"), "w", time.Hour)
	badOwner := xadd(scriptFields("fixme", "w\xff", 9_000_000_000_001)...)
	// no type, and the owner twice (go-redis keeps the last of a name)
	twice := xadd(append(slices.Delete(scriptFields("twice", "w", 9_000_000_000_002), 2, 4), "owner", "other")...)
	long := xadd(scriptFields(testutil.RandomHex(4000), "w", 9_000_000_000_003)...)
	noise := xadd("event", "noise")
	m := mirror(pg.pool, rd)
	if n := drain(t, m); n != 1 {
		t.Fatalf("applied %d, want the real event", n)
	}
	open, total, err := m.DeadLetters(ctx, 2)
	if err != nil || total != 4 || len(open) != 2 {
		t.Fatalf("DeadLetters = %d of %d, %v", len(open), total, err)
	}
	all, _, err := m.DeadLetters(ctx, -1)
	if err != nil || len(all) != 4 {
		t.Fatalf("all dead letters: %d, %v", len(all), err)
	}
	byID := map[string]pgaudit.DeadLetter{}
	for _, d := range all {
		byID[d.StreamID] = d
	}
	if f := byID[twice].Fields; len(f) != 10 || f[2] != (pgaudit.Field{Name: "owner", Value: "w"}) ||
		f[9] != (pgaudit.Field{Name: "owner", Value: "other"}) {
		t.Fatalf("an entry with a field twice is kept with both: %v", f)
	}
	if f := byID[badOwner].Fields; f[3].Value != "w\xff" || !strings.HasPrefix(byID[badOwner].Reason, "malformed: ") {
		t.Fatalf("the owner's bytes are kept: %+v", byID[badOwner])
	}
	if r := byID[long].Reason; !strings.HasPrefix(r, "refused by Postgres: ") || !strings.Contains(r, "54000") {
		t.Fatalf("reason of an id too long for the index: %q", r)
	}

	// the operator corrects the owner, as docs/operations.md shows
	pg.execDB(t, `UPDATE lock_dead_letters SET fields = jsonb_set(fields, '{3,1}', '"w-fixed"')
		WHERE stream_id = $1`, badOwner)
	res, err := m.ReplayDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed != 1 || len(res.Failed) != 3 {
		t.Fatalf("replayed %d, failed %+v", res.Replayed, res.Failed)
	}
	reasons := map[string]string{}
	for _, d := range res.Failed {
		reasons[d.StreamID] = d.Reason
	}
	for id, want := range map[string]string{twice: `field "owner" appears twice`, noise: `field "type" missing`,
		long: "replay: refused by Postgres: "} {
		if !strings.Contains(reasons[id], want) || !strings.HasPrefix(reasons[id], "replay: ") {
			t.Errorf("reason of %s: %q, want %q", id, reasons[id], want)
		}
	}
	if n := pg.count(t, "SELECT count(*) FROM lock_events WHERE stream_id = $1 AND owner_id = 'w-fixed'", badOwner); n != 1 {
		t.Fatalf("%d ledger rows of the replayed entry", n)
	}
	if n := pg.count(t, "SELECT count(*) FROM locks WHERE resource_id = 'fixme' AND owner_id = 'w-fixed'"); n != 1 {
		t.Fatalf("%d mirror rows of the replayed entry", n)
	}
	if n := pg.count(t, `SELECT count(*) FROM lock_dead_letters WHERE resolved_at IS NOT NULL
		AND resolution = 'replayed' AND stream_id = $1`, badOwner); n != 1 {
		t.Fatal("the replayed dead letter is not resolved")
	}
	if _, total, _ := m.DeadLetters(ctx, 10); total != 3 {
		t.Fatalf("%d open dead letters after the replay, want 3", total)
	}
	// a second replay applies nothing twice
	if res, err := m.ReplayDeadLetters(ctx); err != nil || res.Replayed != 0 || len(res.Failed) != 3 {
		t.Fatalf("second replay: %+v, %v", res, err)
	}
	// the operator dismisses the rest
	pg.execDB(t, `UPDATE lock_dead_letters SET resolved_at = now(), resolution = 'dismissed: test'
		WHERE resolved_at IS NULL`)
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{})
	if err != nil || r.DeadLetterCount != 0 {
		t.Fatalf("diagnostics after dismissing: %d dead letters, %v", r.DeadLetterCount, err)
	}

	// fields an operator broke are an error that names the dead letter
	pg.execDB(t, `UPDATE lock_dead_letters SET resolved_at = NULL, fields = '[["event", 5]]' WHERE stream_id = $1`, noise)
	if _, _, err := m.DeadLetters(ctx, 10); err == nil || !strings.Contains(err.Error(), noise) {
		t.Fatalf("DeadLetters with broken fields: %v", err)
	}
	for _, bad := range []string{`{"a": 1}`, `[[{"hex": "zz"}, "x"]]`, `[["x", {"b64": "eA=="}]]`} {
		pg.execDB(t, `UPDATE lock_dead_letters SET fields = $2 WHERE stream_id = $1`, noise, bad)
		if _, err := m.ReplayDeadLetters(ctx); err == nil {
			t.Errorf("replay with fields %s succeeded", bad)
		}
	}
	// a partition the store does not have
	pg.execDB(t, `UPDATE lock_dead_letters SET fields = '[]', partition = 7 WHERE stream_id = $1`, noise)
	if res, err := m.ReplayDeadLetters(ctx); err != nil || len(res.Failed) != 1 ||
		!strings.Contains(res.Failed[0].Reason, "partition 7: the store has 1") {
		t.Fatalf("replay of another partition: %+v, %v", res, err)
	}
	// Postgres down
	pg.execDB(t, "ALTER TABLE lock_dead_letters RENAME TO gone")
	if _, err := m.ReplayDeadLetters(ctx); err == nil || !strings.Contains(err.Error(), "gone") && !strings.Contains(err.Error(), "lock_dead_letters") {
		t.Fatalf("replay without the table: %v", err)
	}
}

func TestReportShowsDeadLetters(t *testing.T) {
	r := sampleReport()
	at := r.At.Add(-time.Minute)
	r.DeadLetterCount = 2
	r.DeadLetters = []pgaudit.DeadLetter{{Partition: 3, StreamID: "1893553445000-0", StreamKey: "lockcoord:{3}:events",
		Group: "lockcoord-mirror", Fields: []pgaudit.Field{{Name: "owner", Value: "w\xff"}, {Name: "id", Value: "7"}},
		Reason: `malformed: entry 1893553445000-0: field "owner" = "w\xff": not valid UTF-8`, RecordedAt: at}}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dead letters (not applied)  2\n", "DEAD LETTERS",
		"3          1893553445000-0  2030-01-02T03:03:05.678Z  malformed: entry", "… and 1 more"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if p := r.Problems(pgaudit.DefaultThresholds()); !strings.Contains(strings.Join(p, "\n"), "2 dead letters") {
		t.Errorf("problems %q", p)
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		DeadLetters struct {
			Count   int `json:"count"`
			Entries []struct {
				StreamID string       `json:"stream_id"`
				Fields   [][2]any     `json:"fields"`
				Reason   string       `json:"reason"`
				Recorded time.Time    `json:"recorded_at"`
				Resolved *time.Time   `json:"resolved_at"`
				Extra    *interface{} `json:"resolution"`
			} `json:"entries"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	e := got.DeadLetters.Entries
	if got.DeadLetters.Count != 2 || len(e) != 1 || e[0].StreamID != "1893553445000-0" || !e[0].Recorded.Equal(at) ||
		e[0].Fields[1][1] != "7" || e[0].Resolved != nil {
		t.Fatalf("JSON: %s", b.String())
	}
	if hexed, _ := e[0].Fields[0][1].(map[string]any); hexed["hex"] != "77ff" {
		t.Fatalf("a value that is not UTF-8 is {\"hex\": ...}: %v", e[0].Fields[0])
	}
	d := r.DeadLetters[0]
	d.ResolvedAt, d.Resolution = at.Add(time.Second), "replayed"
	one, err := json.Marshal(d)
	if err != nil || !strings.Contains(string(one), `"resolved_at":"2030-01-02T03:03:06.678Z","resolution":"replayed"`) {
		t.Fatalf("a resolved dead letter: %s, %v", one, err)
	}
}

// execDB runs a statement on the test's database.
func (e *pgEnv) execDB(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestDeadLetterEncoding(t *testing.T) {
	for in, want := range map[string]string{"ok": "ok", "a\x00b": `a\x00b`, "w\xff": "w\uFFFD", "": ""} {
		if got := pgaudit.SafeText(in); got != want {
			t.Errorf("SafeText(%q) = %q, want %q", in, got, want)
		}
	}
	got := pgaudit.EncodeFields([2]string{"owner", "w\xff"}, [2]string{"id\x00", "7"}, [2]string{"é", ""})
	if want := `[["owner",{"hex":"77ff"}],[{"hex":"696400"},"7"],["é",""]]`; got != want {
		t.Errorf("EncodeFields = %s, want %s", got, want)
	}
}
