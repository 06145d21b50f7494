package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// smoke runs the lockctl binary as a user would, against a throwaway
// redis-server and a Postgres database of its own.
type smoke struct {
	t   *testing.T
	bin string
	env []string
}

// buildLockctl builds the binary of this package into a temporary folder.
func buildLockctl(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build lockctl: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "lockctl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func (s *smoke) command(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	return cmd, &out, &errb
}

// exitCode is the exit status of a finished command, -1 when it did not
// run to an exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// run runs lockctl to its end.
func (s *smoke) run(args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, out, errb := s.command(ctx, args...)
	err := cmd.Run()
	if exitCode(err) < 0 {
		s.t.Fatalf("lockctl %v did not run: %v", args, err)
	}
	return result{code: exitCode(err), stdout: out.String(), stderr: errb.String()}
}

// start starts lockctl in the background; wait returns its result.
func (s *smoke) start(args ...string) (stop func(os.Signal), wait func() result) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd, out, errb := s.command(ctx, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		err := cmd.Wait()
		done <- result{code: exitCode(err), stdout: out.String(), stderr: errb.String()}
	}()
	var res *result
	wait = func() result {
		if res == nil {
			got := <-done
			res = &got
			cancel()
		}
		return *res
	}
	s.t.Cleanup(func() { cancel(); wait() })
	return func(sig os.Signal) { _ = cmd.Process.Signal(sig) }, wait
}

// TestSmoke is the integration smoke test: the lockctl binary against a
// real Redis and Postgres.
func TestSmoke(t *testing.T) {
	srv := testredis.Start(t)
	db := testpg.New(t)
	s := &smoke{t: t, bin: buildLockctl(t)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOCKCOORD_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "LOCKCOORD_REDIS_URL=redis://"+srv.Addr+"/0", "LOCKCOORD_DATABASE_URL="+db.URL)

	r := s.run("version").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "lockctl ") {
		t.Fatalf("version %q", r.stdout)
	}

	// migrate
	r = s.run("migrate").want(t, ExitOK)
	if !strings.Contains(r.stdout, "applied 00001_init.sql") {
		t.Fatalf("migrate: %q", r.stdout)
	}

	// the demo with the mirror: ledger rows equal events written (the demo
	// takes its services from its command line only)
	r = s.run("demo", "--redis-url", "redis://"+srv.Addr+"/0", "--database-url", db.URL,
		"--duration", "2s", "--ttl", "500ms", "--json").want(t, ExitOK)
	var sum map[string]any
	r.json(t, &sum)
	if sum["ok"] != true || sum["ledger_rows"] == nil || sum["ledger_rows"] != sum["events_written"] ||
		sum["redis"] != srv.Addr || sum["acquisitions"].(float64) == 0 {
		t.Fatalf("demo summary %v", sum)
	}
	if !strings.Contains(r.stderr, "demo: ") {
		t.Fatalf("demo progress: %q", r.stderr)
	}

	// diagnostics: healthy
	var rep map[string]any
	s.run("diagnostics", "--json").want(t, ExitOK).json(t, &rep)
	if rep["healthy"] != true {
		t.Fatalf("diagnostics %v", rep)
	}

	// a run whose lease is stolen: the command is terminated, status 5
	_, waitRun := s.start("run", "plan/smoke", "--owner", "smoke-runner", "--ttl", "1500ms", "--", "sleep", "30")
	testutil.Eventually(t, 10*time.Second, "run to hold plan/smoke", func() bool {
		held := s.run("inspect", "plan/smoke", "--json")
		return held.code == ExitOK && strings.Contains(held.stdout, `"owner":"smoke-runner"`)
	})
	start := time.Now()
	r = s.run("release", "--force", "plan/smoke").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "forced plan/smoke") {
		t.Fatalf("release --force: %q", r.stdout)
	}
	r = waitRun().want(t, ExitLeaseLost)
	if !strings.Contains(r.stderr, "lease lost") || !strings.Contains(r.stderr, "terminated with SIGTERM") {
		t.Fatalf("stolen run: %q", r.stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the stolen run ended %s after the theft", d)
	}
	// the lease lost while the command ran, though the command exited 0
	r = s.run("run", "plan/late", "--keep-credentials", "--", s.bin, "release", "--force", "plan/late").want(t, ExitLeaseLost)
	if !strings.Contains(r.stderr, "exited with status 0") {
		t.Fatalf("late loss: %q", r.stderr)
	}
	s.run("run", "plan/ok", "--", "sh", "-c", `test -n "$LOCKCOORD_TOKEN" && test "$LOCKCOORD_RESOURCE" = plan/ok`).want(t, ExitOK)
	s.run("run", "plan/ok", "--", "sh", "-c", "exit 9").want(t, 9)

	// a holder that died: its row goes stale, cleanup moves it to the ledger
	s.run("acquire", "plan/stale", "--owner", "dead-worker", "--ttl", "1ms").want(t, ExitOK)
	s.run("mirror", "--once").want(t, ExitOK)
	var rows []map[string]any
	s.run("cleanup", "--json").want(t, ExitOK).json(t, &rows)
	if len(rows) != 1 || rows[0]["resource"] != "plan/stale" || rows[0]["owner"] != "dead-worker" {
		t.Fatalf("cleanup %v", rows)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events WHERE event = 'expired' AND resource_id = 'stale'"); n != 1 {
		t.Fatalf("%d expired rows for plan/stale", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM lock_events WHERE resource_id = 'smoke' AND event IN ('acquired', 'forced')"); n != 2 {
		t.Fatalf("plan/smoke in the ledger: %d rows, want acquired and forced", n)
	}

	// list and inspect a lease held
	s.run("acquire", "project/listed", "--owner", "smoke", "--ttl", "1m").want(t, ExitOK)
	leases := jsonLines[leaseView](t, s.run("list", "--json").want(t, ExitOK))
	if len(leases) != 1 || leases[0].Resource != "project/listed" || leases[0].Owner != "smoke" {
		t.Fatalf("list %+v", leases)
	}
	r = s.run("list", "--type", "project").want(t, ExitOK)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "project/listed") {
		t.Fatalf("list table:\n%s", r.stdout)
	}
	r = s.run("inspect", "project/listed").want(t, ExitOK)
	if !strings.Contains(r.stdout, "owner        smoke") || !strings.Contains(r.stdout, "lockcoord:{") {
		t.Fatalf("inspect:\n%s", r.stdout)
	}

	// the mirror as a service: SIGTERM drains and exits 0
	stopMirror, waitMirror := s.start("mirror")
	testutil.Eventually(t, 10*time.Second, "the mirror to record project/listed", func() bool {
		return db.Count(t, "SELECT count(*) FROM locks WHERE resource_id = 'listed' AND owner_id = 'smoke'") == 1
	})
	s.run("release", "project/listed", "--owner", "smoke").want(t, ExitOK)
	testutil.Eventually(t, 10*time.Second, "the mirror to record the release", func() bool {
		return db.Count(t, "SELECT count(*) FROM locks WHERE resource_id = 'listed'") == 0
	})
	stopMirror(syscall.SIGTERM)
	r = waitMirror().want(t, ExitOK)
	if !strings.Contains(r.stderr, "mirror stopped") {
		t.Fatalf("mirror log: %q", r.stderr)
	}
	s.run("diagnostics", "--max-stale", "0", "--json").want(t, ExitOK).json(t, &rep)
	if rep["leases_held"].(float64) != 0 || rep["rows_mirrored"].(float64) != 0 {
		t.Fatalf("diagnostics at the end %v", rep)
	}

	// errors: one line, distinct statuses
	r = s.run("--redis-url", "redis://127.0.0.1:1/0", "list").want(t, ExitUnavailable)
	if !strings.Contains(r.stderr, "cannot reach Redis at 127.0.0.1:1") {
		t.Fatalf("unreachable: %q", r.stderr)
	}
	s.run("inspect", "Plan/1").want(t, ExitUsage)
	s.run("inspect", "plan/free").want(t, ExitConflict)
	jsonLines[json.RawMessage](t, s.run("list", "--json").want(t, ExitOK))
}
