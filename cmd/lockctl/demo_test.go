package main

import (
	"encoding/json"
	"regexp"
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

// TestDemoWithPostgres: with --database-url on its command line the demo
// mirrors into a schema of its own, and only there: the ledger has one row
// per event written. The schema is dropped at the end, unless
// --keep-schema.
func TestDemoWithPostgres(t *testing.T) {
	db := testpg.New(t)
	c := newCLI(t, "")
	r := c.run("demo", "--database-url", db.URL, "--keep-schema", "--duration", "2s", "--ttl", "500ms", "--workers", "3",
		"--plans", "4", "--json", "--quiet").want(t, ExitOK)
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
	schema, _ := m["schema"].(string)
	if !regexp.MustCompile(`^lockcoord_demo_[0-9a-f]{8}$`).MatchString(schema) || m["schema_kept"] != true ||
		!strings.HasSuffix(m["postgres"].(string), "/"+db.Name) {
		t.Fatalf("summary %v", m)
	}
	if n := db.Count(t, "SELECT count(*) FROM "+schema+".lock_events WHERE event <> 'expired'"); float64(n) != rows {
		t.Fatalf("%d ledger rows in the database, summary says %v", n, rows)
	}
	if n := db.Count(t, "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema', $1)", schema); n != 0 {
		t.Fatalf("the demo created %d tables outside its schema %s", n, schema)
	}

	// without --keep-schema the schema is gone at the end; the header says so
	r = c.run("demo", "--database-url", db.URL, "--duration", "1s", "--ttl", "500ms", "--workers", "2", "--quiet").want(t, ExitOK)
	header := regexp.MustCompile(`Postgres: \S+/` + db.Name + `, schema (lockcoord_demo_[0-9a-f]{8}) of the demo's own \(dropped at the end\)`).
		FindStringSubmatch(r.stdout)
	if header == nil || header[1] == schema {
		t.Fatalf("demo table:\n%s", r.stdout)
	}
	if n := db.Count(t, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", header[1]); n != 0 {
		t.Fatalf("schema %s left behind", header[1])
	}
}

// TestDemoIgnoresTheServicesOfTheEnvironment: with LOCKCOORD_REDIS_URL,
// LOCKCOORD_DATABASE_URL and LOCKCOORD_PREFIX exported, as an operator's
// shell has them, the demo runs on its embedded Redis and writes nothing
// into that Redis or that ledger.
func TestDemoIgnoresTheServicesOfTheEnvironment(t *testing.T) {
	mr, url := newMiniredis(t)
	db := testpg.New(t)
	op := newCLI(t, "")
	op.env["LOCKCOORD_DATABASE_URL"] = db.URL
	op.run("migrate").want(t, ExitOK)

	c := newCLI(t, "")
	c.env["LOCKCOORD_REDIS_URL"] = url
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.env["LOCKCOORD_PREFIX"] = "lockcoord"
	r := c.run("demo", "--duration", "1s", "--ttl", "500ms", "--workers", "2", "--quiet", "--json").want(t, ExitOK)
	var m map[string]any
	r.json(t, &m)
	if redis, _ := m["redis"].(string); !strings.HasPrefix(redis, "embedded miniredis") || m["postgres"] != nil {
		t.Fatalf("the demo ran on redis %v, postgres %v", m["redis"], m["postgres"])
	}
	if n := mr.CommandCount(); n != 0 {
		t.Fatalf("the demo sent %d commands to the environment's Redis (keys now %v)", n, mr.Keys())
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events") + db.Count(t, "SELECT count(*) FROM locks"); n != 0 {
		t.Fatalf("the demo wrote %d rows into the environment's ledger", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'lockcoord_demo_%'"); n != 0 {
		t.Fatalf("the demo left %d schemas", n)
	}
}
