package main

import (
	"strings"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
)

// TestDoctor: issue 12 items 1 and 2. doctor prints a line per check and
// exits 8 on an evicting policy or a partition count that disagrees, 0
// when healthy; acquire refuses an evicting Redis.
func TestDoctor(t *testing.T) {
	srv := testredis.Start(t, "--maxmemory-policy", "volatile-lru")
	url := "redis://" + srv.Addr + "/0"
	c := newCLI(t, url)
	r := c.run("doctor").want(t, ExitUnhealthy)
	for _, want := range []string{"FAIL  eviction", "volatile-lru", "WARN  persistence", "OK    server", "UNHEALTHY"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("doctor on volatile-lru: no %q in\n%s", want, r.stdout)
		}
	}
	r = c.run("acquire", "plan/1", "--owner", "w1").want(t, ExitUnhealthy)
	if !strings.Contains(r.stderr, "maxmemory-policy") {
		t.Fatalf("acquire on volatile-lru: %d %q", r.code, r.stderr)
	}

	if _, err := srv.Do(t.Context(), "CONFIG", "SET", "maxmemory-policy", "noeviction"); err != nil {
		t.Fatal(err)
	}
	c.run("acquire", "plan/1", "--owner", "w1").want(t, ExitOK)
	var rep doctorReport
	c.run("doctor", "--json", "--worker-user", "default").want(t, ExitOK).json(t, &rep)
	if !rep.Healthy || rep.ExitCode != 0 || len(rep.Checks) != 5 || rep.Partitions.Recorded != 16 || len(rep.Partitions.Marks) != 1 ||
		rep.Servers[0].Policy != "noeviction" {
		t.Fatalf("doctor --json when healthy: %+v", rep)
	}

	// a count that disagrees: the fence of plan/1's partition is marked 16
	if _, err := srv.Do(t.Context(), "SET", "lockcoord:partitions", "8"); err != nil {
		t.Fatal(err)
	}
	r = c.run("doctor", "--partitions", "16").want(t, ExitUnhealthy)
	if !strings.Contains(r.stdout, "FAIL  partitions") || !strings.Contains(r.stdout, "8 partitions") {
		t.Fatalf("doctor with the count at 8:\n%s", r.stdout)
	}
	if _, err := srv.Do(t.Context(), "DEL", "lockcoord:partitions"); err != nil {
		t.Fatal(err)
	}
	r = c.run("doctor", "--partitions", "8").want(t, ExitUnhealthy)
	if !strings.Contains(r.stdout, "is marked 16") {
		t.Fatalf("doctor for 8 partitions on fences marked 16:\n%s", r.stdout)
	}

	// permissions a worker lacks
	if _, err := srv.Do(t.Context(), "ACL", "SETUSER", "weak", "on", ">pw", "~*", "&*", "-@all", "+get"); err != nil {
		t.Fatal(err)
	}
	r = c.run("doctor", "--worker-user", "weak").want(t, ExitUnhealthy)
	if !strings.Contains(r.stdout, "FAIL  acl") || !strings.Contains(r.stdout, "+evalsha") || strings.Contains(r.stdout, "+get ") {
		t.Fatalf("doctor --worker-user weak:\n%s", r.stdout)
	}
	r = c.run("doctor", "--worker-user", "nobody").want(t, ExitOK) // a warning
	if !strings.Contains(r.stdout, "WARN  acl") {
		t.Fatalf("doctor --worker-user nobody:\n%s", r.stdout)
	}
}

// TestDoctorOnMiniredisAndUnreachable: miniredis is healthy (it never
// evicts); an unreachable Redis is exit 4, with --json one object.
func TestDoctorOnMiniredisAndUnreachable(t *testing.T) {
	_, url := newMiniredis(t)
	r := newCLI(t, url).run("doctor").want(t, ExitOK)
	if !strings.Contains(r.stdout, "miniredis") || !strings.HasSuffix(r.stdout, "healthy\n") {
		t.Fatalf("doctor on miniredis:\n%s", r.stdout)
	}
	var rep map[string]any
	newCLI(t, "redis://127.0.0.1:1/0").run("doctor", "--json", "--timeout", "2s").want(t, ExitUnavailable).json(t, &rep)
	if rep["exit_code"] != float64(ExitUnavailable) {
		t.Fatalf("doctor --json of an unreachable Redis: %v", rep)
	}
	if versionBelow("6.0.9", 6, 2) != true || versionBelow("6.2.0", 6, 2) || versionBelow("7", 6, 2) || versionBelow("x.y", 6, 2) {
		t.Fatal("versionBelow")
	}
}

// TestDiagnosticsReportsAnEvictingPolicy: issue 12 item 1, the diagnostics
// said "healthy", exit 0, on allkeys-lru.
func TestDiagnosticsReportsAnEvictingPolicy(t *testing.T) {
	db := testpg.New(t)
	srv := testredis.Start(t, "--maxmemory-policy", "allkeys-lru")
	c := newCLI(t, "redis://"+srv.Addr+"/0")
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.run("migrate").want(t, ExitOK)
	r := c.run("diagnostics").want(t, ExitUnhealthy)
	if !strings.Contains(r.stdout, "maxmemory-policy allkeys-lru can evict leases") {
		t.Fatalf("diagnostics on allkeys-lru:\n%s", r.stdout)
	}
	var rep map[string]any
	c.run("diagnostics", "--json").want(t, ExitUnhealthy).json(t, &rep)
	if servers, _ := rep["redis"].([]any); len(servers) != 1 || rep["healthy"] != false {
		t.Fatalf("diagnostics --json on allkeys-lru: %v", rep)
	}
	if _, err := srv.Do(t.Context(), "CONFIG", "SET", "maxmemory-policy", "noeviction"); err != nil {
		t.Fatal(err)
	}
	c.run("diagnostics").want(t, ExitOK)
}
