package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

func TestPostgresCommands(t *testing.T) {
	db := testpg.New(t)
	mr, url := newMiniredis(t)
	// Redis time is the test's: TIME follows SetTime, TTLs FastForward
	now := time.Now().Truncate(time.Millisecond)
	mr.SetTime(now)
	c := newCLI(t, url)
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL

	r := c.run("migrate").want(t, ExitOK)
	if !strings.Contains(r.stdout, "applied 00001") {
		t.Fatalf("migrate: %q", r.stdout)
	}
	r = c.run("migrate").want(t, ExitOK)
	if !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("second migrate: %q", r.stdout)
	}
	if n := db.Count(t, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('locks', 'lock_events')"); n != 2 {
		t.Fatalf("%d audit tables", n)
	}

	c.run("acquire", "plan/a", "--owner", "w1", "--ttl", "1m").want(t, ExitOK)
	c.run("acquire", "plan/a", "--owner", "w1", "--ttl", "1m").want(t, ExitOK)
	c.run("acquire", "plan/dies", "--owner", "w2", "--ttl", "1s").want(t, ExitOK)
	c.run("acquire", "plan/b", "--owner", "w1").want(t, ExitOK)
	c.run("release", "plan/b", "--owner", "w1").want(t, ExitOK)
	r = c.run("mirror", "--once").want(t, ExitOK)
	if r.stdout != "applied 5 events\n" {
		t.Fatalf("mirror --once: %q", r.stdout)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events"); n != 5 {
		t.Fatalf("%d ledger rows, want 5", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM locks WHERE hold_count = 2 AND resource_id = 'a'"); n != 1 {
		t.Fatalf("plan/a not mirrored with two holds")
	}

	var rep map[string]any
	c.run("diagnostics", "--json").want(t, ExitOK).json(t, &rep)
	if rep["healthy"] != true || rep["leases_held"].(float64) != 2 || rep["rows_mirrored"].(float64) != 2 || rep["exit_code"].(float64) != 0 {
		t.Fatalf("diagnostics %v", rep)
	}
	r = c.run("diagnostics").want(t, ExitOK)
	if !strings.Contains(r.stdout, "leases held (redis)") || !strings.HasSuffix(r.stdout, "\nhealthy\n") {
		t.Fatalf("diagnostics table:\n%s", r.stdout)
	}

	// plan/dies's holder died: its key expires in Redis, its row goes stale
	mr.FastForward(2 * time.Second)
	mr.SetTime(now.Add(2 * time.Second))
	c.run("diagnostics", "--json", "--max-stale", "0").want(t, ExitUnhealthy).json(t, &rep)
	stale := rep["stale"].(map[string]any)
	if rep["healthy"] != false || stale["count"].(float64) != 1 || len(rep["problems"].([]any)) != 1 || rep["exit_code"] != float64(ExitUnhealthy) {
		t.Fatalf("diagnostics with a stale lease %v", rep)
	}
	r = c.run("diagnostics", "--max-stale", "0").want(t, ExitUnhealthy)
	if !strings.Contains(r.stdout, "UNHEALTHY") || !strings.Contains(r.stdout, "1 stale leases") {
		t.Fatalf("unhealthy table:\n%s", r.stdout)
	}
	// the default thresholds do not judge stale leases
	c.run("diagnostics").want(t, ExitOK)

	var rows []map[string]any
	c.run("cleanup", "--json").want(t, ExitOK).json(t, &rows)
	if len(rows) != 1 || rows[0]["resource"] != "plan/dies" || rows[0]["owner"] != "w2" {
		t.Fatalf("cleanup %v", rows)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired' AND resource_id = 'dies'"); n != 1 {
		t.Fatalf("%d expired ledger rows", n)
	}
	r = c.run("cleanup").want(t, ExitOK)
	if r.stdout != "moved 0 stale leases to the ledger\n" {
		t.Fatalf("second cleanup: %q", r.stdout)
	}
	c.run("diagnostics", "--max-stale", "0").want(t, ExitOK)
}

func TestPostgresErrors(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	for _, cmd := range []string{"migrate", "mirror", "cleanup"} {
		r := c.run(cmd).want(t, ExitUsage)
		if !strings.Contains(r.stderr, "--database-url") {
			t.Fatalf("%s without a database: %q", cmd, r.stderr)
		}
	}
	// diagnostics that cannot check exit with the status of the cause: 2
	// for a missing URL
	c.run("diagnostics").want(t, ExitUsage)
	c.env["LOCKCOORD_DATABASE_URL"] = "postgres://u:topsecret@127.0.0.1:5432/db?sslmode=bogus"
	r := c.run("migrate").want(t, ExitUsage)
	if strings.Contains(r.stderr, "topsecret") {
		t.Fatalf("password in %q", r.stderr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c.env["LOCKCOORD_DATABASE_URL"] = "postgres://u:topsecret@" + addr + "/db?sslmode=disable&connect_timeout=2"
	r = c.run("migrate").want(t, ExitUnavailable)
	if !strings.Contains(r.stderr, "cannot reach Postgres at "+addr+"/db") || strings.Contains(r.stderr, "topsecret") {
		t.Fatalf("unreachable: %q", r.stderr)
	}
	// 4 for an unreachable Postgres, and with --json the same as JSON
	r = c.run("diagnostics", "--json").want(t, ExitUnavailable)
	var failed map[string]any
	r.json(t, &failed)
	if !strings.Contains(r.stderr, "cannot reach Postgres") || failed["exit_code"] != float64(ExitUnavailable) ||
		failed["healthy"] != false || !strings.Contains(fmt.Sprint(failed["problems"]), "cannot reach Postgres") ||
		!strings.Contains(fmt.Sprint(failed["error"]), "cannot reach Postgres") {
		t.Fatalf("diagnostics unreachable: %q %q", r.stdout, r.stderr)
	}
	// authentication refused (needs a Postgres)
	db := testpg.New(t)
	u := strings.Replace(db.URL, "postgres://postgres@", "postgres://no_such_role_"+testutil.RandomHex(3)+"@", 1)
	c.env["LOCKCOORD_DATABASE_URL"] = u
	r = c.run("migrate").want(t, ExitAuth)
	if !strings.Contains(r.stderr, "refused the credentials") {
		t.Fatalf("auth: %q", r.stderr)
	}
}

func TestMirrorUntilCancelled(t *testing.T) {
	db := testpg.New(t)
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.run("migrate").want(t, ExitOK)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result)
	go func() { done <- c.runCtx(ctx, "mirror", "--metrics-addr", metrics, "--log-format", "json") }()
	for i := range 10 {
		c.run("acquire", fmt.Sprintf("job/%d", i), "--owner", "w").want(t, ExitOK)
	}
	testutil.Eventually(t, 10*time.Second, "the mirror to apply the events", func() bool {
		return db.Count(t, "SELECT count(*) FROM lock_events") == 10
	})
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics: %d\n%.300s", resp.StatusCode, body)
	}
	cancel() // SIGTERM
	r := (<-done).want(t, ExitOK)
	// the mirror logs at info by default, as JSON lines
	var first map[string]any
	line, _, _ := strings.Cut(r.stderr, "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil || first["level"] != "info" {
		t.Fatalf("mirror log %q: %v", r.stderr, err)
	}
	if n := db.Count(t, "SELECT count(*) FROM locks"); n != 10 {
		t.Fatalf("%d rows mirrored", n)
	}
}
