package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testpg"
)

func TestDemoEmbedded(t *testing.T) {
	c := newCLI(t, "")
	r := c.run("demo", "--duration", "1500ms", "--ttl", "500ms", "--workers", "3", "--plans", "4", "--projects", "2", "--json").want(t, ExitOK)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, r.stdout)
	}
	if m["ok"] != true || m["workers"].(float64) != 3 || !strings.HasPrefix(m["redis"].(string), "embedded miniredis") ||
		m["acquisitions"].(float64) == 0 {
		t.Fatalf("summary %v", m)
	}
	// progress went to stderr, as plain lines
	if !strings.Contains(r.stderr, "demo: ") {
		t.Fatalf("no progress on stderr: %q", r.stderr)
	}
	r = c.run("demo", "--duration", "1s", "--ttl", "500ms", "--workers", "2", "--quiet").want(t, ExitOK)
	if r.stderr != "" || !strings.Contains(r.stdout, "all invariants held") || !strings.Contains(r.stdout, "acquire latency p50") {
		t.Fatalf("demo table:\n%s\nstderr %q", r.stdout, r.stderr)
	}
	for _, bad := range [][]string{
		{"demo", "--workers", "0"}, {"demo", "--chaos", "--duration", "1s"}, {"demo", "--ttl", "1ms"}, {"demo", "x"},
	} {
		c.run(bad...).want(t, ExitUsage)
	}
}

func TestDemoOnRedisURL(t *testing.T) {
	mr, url := newMiniredis(t)
	mr.Set("lockcoord:partitions", "16") // someone else's data stays
	c := newCLI(t, url)
	r := c.run("demo", "--duration", "1s", "--ttl", "500ms", "--workers", "2", "--quiet", "--json").want(t, ExitOK)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	prefix, _ := m["prefix"].(string)
	if !strings.HasPrefix(prefix, "lockcoord-demo-") || m["redis"] != mr.Addr() {
		t.Fatalf("summary %v", m)
	}
	// the demo deleted its keys and only those
	if keys := mr.Keys(); len(keys) != 1 || keys[0] != "lockcoord:partitions" {
		t.Fatalf("keys after the demo: %v", keys)
	}
}

func TestDemoWithPostgres(t *testing.T) {
	db := testpg.New(t)
	c := newCLI(t, "")
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	r := c.run("demo", "--duration", "2s", "--ttl", "500ms", "--workers", "3", "--plans", "4", "--json", "--quiet").want(t, ExitOK)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	rows, ok := m["ledger_rows"].(float64)
	if m["ok"] != true || !ok || rows != m["events_written"].(float64) || rows == 0 {
		t.Fatalf("summary %v", m)
	}
	names := map[string]bool{}
	for _, inv := range m["invariants"].([]any) {
		names[inv.(map[string]any)["name"].(string)] = true
	}
	if !names["ledger rows equal events written"] || !names["mirror holds none of the demo's leases"] {
		t.Fatalf("invariants %v", names)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events WHERE event <> 'expired'"); float64(n) != rows {
		t.Fatalf("%d ledger rows in the database, summary says %v", n, rows)
	}
}
