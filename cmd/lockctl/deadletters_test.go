package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Issue 12 item 8: after an entry at the largest stream id, mirror --once
// said "applied 11 events" while it had dropped the 10 acquisitions as
// malformed.
func TestMirrorOnceCountsOnlyAppliedEventsAndKeepsDeadLetters(t *testing.T) {
	srv := testredis.Start(t)
	db := testpg.New(t)
	c := newCLI(t, "redis://"+srv.Addr+"/0")
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.env["LOCKCOORD_PARTITIONS"] = "1"
	c.run("migrate").want(t, ExitOK)
	rdb := srv.Client(t)
	stream := redisstore.New(rdb, redisstore.WithPartitions(1)).Layout().StreamKey(0)
	if err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, ID: "18446744073709551615-0",
		Values: []string{"note", "by hand \xff"}}).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c.run("acquire", fmt.Sprintf("plan/%d", i), "--owner", "w").want(t, ExitOK)
	}
	r := c.run("mirror", "--once").want(t, ExitOK)
	if r.stdout != "applied 10 events\n1 entries wait in the dead-letter table (lockctl dead-letters)\n" {
		t.Fatalf("mirror --once: %q", r.stdout)
	}
	if n := db.Count(t, "SELECT count(*) FROM locks"); n != 10 {
		t.Fatalf("%d rows mirrored, want the 10 acquisitions", n)
	}
	r = c.run("dead-letters").want(t, ExitOK)
	for _, want := range []string{"1 open dead letters\n", "partition 0 entry 18446744073709551615-0 (lockcoord:{0}:events)",
		`reason: malformed: entry 18446744073709551615-0: field "event" missing`, `fields: "note"="by hand \xff"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dead-letters lacks %q:\n%s", want, r.stdout)
		}
	}
	var list struct {
		Count   int `json:"count"`
		Entries []struct {
			StreamID string   `json:"stream_id"`
			Fields   [][2]any `json:"fields"`
		} `json:"entries"`
	}
	c.run("dead-letters", "--json").want(t, ExitOK).json(t, &list)
	if list.Count != 1 || list.Entries[0].StreamID != "18446744073709551615-0" ||
		fmt.Sprint(list.Entries[0].Fields) != "[[note map[hex:62792068616e6420ff]]]" {
		t.Fatalf("dead-letters --json: %+v", list)
	}
	c.run("dead-letters", "--limit", "0").want(t, ExitOK)
	var rep map[string]any
	c.run("diagnostics", "--json").want(t, ExitUnhealthy).json(t, &rep)
	if dl := rep["dead_letters"].(map[string]any); dl["count"].(float64) != 1 ||
		!strings.Contains(fmt.Sprint(rep["problems"]), "1 dead letters") {
		t.Fatalf("diagnostics with a dead letter: %v", rep)
	}
	c.run("diagnostics", "--max-dead-letters", "-1").want(t, ExitOK)

	// replay: the entry is still no lease event
	r = c.run("dead-letters", "--replay").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "replayed 0 dead letters; 1 still fail\n") || !strings.Contains(r.stdout, "reason: replay: malformed") {
		t.Fatalf("dead-letters --replay: %q", r.stdout)
	}
	// the operator writes the event it should have been, and replays it
	conn, err := pgx.Connect(t.Context(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	now := time.Now().UnixMilli()
	if _, err := conn.Exec(t.Context(), `UPDATE lock_dead_letters SET fields = $1`, fmt.Sprintf(`[["event","acquired"],
		["type","plan"],["id","late"],["owner","w"],["token","5"],["count","1"],["at","%d"],["acquired_at","%d"],
		["expires_at","%d"],["req","r"]]`, now, now, now+60_000)); err != nil {
		t.Fatal(err)
	}
	var replayed map[string]any
	c.run("dead-letters", "--replay", "--json").want(t, ExitOK).json(t, &replayed)
	if replayed["replayed"].(float64) != 1 || len(replayed["failed"].([]any)) != 0 {
		t.Fatalf("replay --json: %v", replayed)
	}
	c.run("dead-letters", "--json").want(t, ExitOK).json(t, &list)
	if list.Count != 0 || list.Entries == nil {
		t.Fatalf("after the replay: %+v", list)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events WHERE stream_id = '18446744073709551615-0'"); n != 1 {
		t.Fatal("the replayed entry is not in the ledger under its stream id")
	}
	c.run("dead-letters").want(t, ExitOK)
}

// Issue 12 item 11: a SIGTERM to a mirror whose batch waits on Postgres
// ended it only at the apply timeout (30 s), not --drain-timeout; mirror
// --once stopped during a Postgres stall said "cannot reach Redis".
func TestMirrorStoppedDuringAPostgresStall(t *testing.T) {
	db := testpg.New(t)
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.run("migrate").want(t, ExitOK)
	stall := func() (release func()) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "LOCK TABLE lock_events IN ACCESS EXCLUSIVE MODE")
		}
		if err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback(ctx); _ = conn.Close(ctx) }
	}
	waiting := func() bool {
		return db.Count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, db.Name) > 0
	}

	release := stall()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- c.runCtx(ctx, "mirror", "--drain-timeout", "300ms", "--log-format", "json") }()
	c.run("acquire", "plan/1", "--owner", "w").want(t, ExitOK)
	testutil.Eventually(t, 10*time.Second, "the mirror's batch to wait on the table lock", waiting)
	start := time.Now()
	cancel() // SIGTERM
	r := (<-done).want(t, ExitOK)
	took := time.Since(start)
	release() // only now: the drain timeout, not the stall's end, stopped the mirror
	if !strings.Contains(r.stderr, `"cause":"the drain timeout passed"`) {
		t.Fatalf("mirror stopped %v after SIGTERM without saying the drain timeout passed:\n%s", took, r.stderr)
	}
	t.Logf("mirror exited %v after SIGTERM (--drain-timeout 300ms, apply timeout 30s)", took)

	release = stall()
	defer release()
	c.run("acquire", "plan/2", "--owner", "w").want(t, ExitOK)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- c.runCtx(ctx, "mirror", "--once", "--drain-timeout", "300ms") }()
	testutil.Eventually(t, 10*time.Second, "mirror --once to wait on the table lock", waiting)
	cancel()
	r = (<-done).want(t, ExitUnavailable)
	t.Logf("mirror --once stopped during the stall: %s", r.stderr)
	if !strings.Contains(r.stderr, "Postgres at ") || strings.Contains(r.stderr, "Redis") {
		t.Fatalf("mirror --once stopped during a Postgres stall: %q", r.stderr)
	}
}
