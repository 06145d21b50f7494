package main

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// TestTokensAreStrings: every JSON output carries fencing tokens (and the
// demo's seed) as decimal strings, so that jq and JavaScript keep every
// digit.
func TestTokensAreStrings(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	isString := func(what string, v any) {
		t.Helper()
		if _, ok := v.(string); !ok {
			t.Errorf("%s: token %v is a %T, want a string", what, v, v)
		}
	}
	obj := func(r result) map[string]any {
		t.Helper()
		var m map[string]any
		r.json(t, &m)
		return m
	}
	isString("acquire", obj(c.run("acquire", "plan/t", "--owner", "w", "--json").want(t, ExitOK))["token"])
	isString("acquire, conflict", obj(c.run("acquire", "plan/t", "--owner", "x", "--json").want(t, ExitConflict))["token"])
	isString("renew", obj(c.run("renew", "plan/t", "--owner", "w", "--json").want(t, ExitOK))["token"])
	isString("inspect", obj(c.run("inspect", "plan/t", "--json").want(t, ExitOK))["token"])
	for _, l := range jsonLines[map[string]any](t, c.run("list", "--json").want(t, ExitOK)) {
		isString("list", l["token"])
	}
	// partitions needs CLIENT INFO, which miniredis lacks
	srv := testredis.Start(t)
	rc := newCLI(t, "redis://"+srv.Addr+"/0")
	rc.run("acquire", "plan/t", "--owner", "w").want(t, ExitOK)
	var ps []map[string]any
	rc.run("partitions", "--json").want(t, ExitOK).json(t, &ps)
	for _, p := range ps {
		isString("partitions", p["fence"])
	}
	isString("release", obj(c.run("release", "plan/t", "--owner", "w", "--json").want(t, ExitOK))["token"])
	demo := obj(newCLI(t, "").run("demo", "--duration", "200ms", "--quiet", "--json", "--seed", "18446744073709551615").want(t, ExitOK))
	if demo["seed"] != "18446744073709551615" {
		t.Errorf("demo seed %v (%T), want the string 18446744073709551615", demo["seed"], demo["seed"])
	}
}

// TestListFailure: a list that fails prints no table header, and with
// --json one complete JSON error line.
func TestListFailure(t *testing.T) {
	c := newCLI(t, "redis://"+closedPort(t)+"/0")
	r := c.run("list").want(t, ExitUnavailable)
	if r.stdout != "" {
		t.Fatalf("list printed %q before failing", r.stdout)
	}
	r = c.run("list", "--json").want(t, ExitUnavailable)
	lines := jsonLines[jsonError](t, r)
	if len(lines) != 1 || lines[0].ExitCode != ExitUnavailable || !strings.Contains(lines[0].Error, "cannot reach Redis") {
		t.Fatalf("list --json failing: %q", r.stdout)
	}
	// so for acquire, renew, release
	for _, args := range [][]string{{"acquire", "plan/1", "--owner", "w"}, {"renew", "plan/1", "--owner", "w"}, {"release", "plan/1", "--owner", "w"}} {
		r = c.run(append(args, "--json")...).want(t, ExitUnavailable)
		if l := jsonLines[jsonError](t, r); len(l) != 1 || l[0].ExitCode != ExitUnavailable {
			t.Fatalf("%s --json failing: %q", args[0], r.stdout)
		}
	}
	// an empty listing still has its header, and no JSON line
	_, url := newMiniredis(t)
	if r := newCLI(t, url).run("list").want(t, ExitOK); !strings.HasPrefix(r.stdout, "RESOURCE ") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("empty list: %q", r.stdout)
	}
	if r := newCLI(t, url).run("list", "--json").want(t, ExitOK); r.stdout != "" {
		t.Fatalf("empty list --json: %q", r.stdout)
	}
}

// TestAcquireTokenExample runs acquire --help's shell example with sh and
// jq: it keeps the token of a lease taken, and fails on a conflict
// instead of capturing the holder's token.
func TestAcquireTokenExample(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		testutil.Unavailable(t, "jq (the example's JSON filter): %v", err)
	}
	help := newCLI(t, "").run("acquire", "--help").want(t, ExitOK).stdout
	if !strings.Contains(help, acquireTokenExample) {
		t.Fatal("acquire --help does not show the example")
	}
	_, url := newMiniredis(t)
	// lockctl on PATH is this test binary, running lockctl's main
	bin := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\n%s=lockctl exec %q --redis-url %q \"$@\"\n", helperEnv, exe, url)
	if err := os.WriteFile(filepath.Join(bin, "lockctl"), []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	script := acquireTokenExample + "\necho \"token=$TOKEN\"\n"
	run := func(host string) (string, int) {
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOSTNAME="+host)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("host-1")
	if code != 0 || !strings.HasPrefix(out, "token=") || len(strings.TrimSpace(out)) < len("token=1") {
		t.Fatalf("the example on a free resource: exit %d, %q", code, out)
	}
	if out, code := run("host-2"); code != 3 || strings.Contains(out, "token=") {
		t.Fatalf("the example on a conflict: exit %d, %q (must fail, never take the holder's token)", code, out)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	c := newCLI(t, "")
	v := c.run("version").want(t, ExitOK).stdout
	if got := c.run("--version").want(t, ExitOK).stdout; got != v {
		t.Fatalf("--version %q, version %q", got, v)
	}
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.4.2"}}, "lockctl v1.4.2 go"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-05-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"}}}, "lockctl devel 0123456789ab+dirty 2026-05-01T10:00:00Z go"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "lockctl devel (no version or VCS information in the build) go"},
		{nil, "lockctl devel (no version"},
	} {
		if got := versionString(tc.bi); !strings.HasPrefix(got, tc.want) || strings.Contains(got, "(devel)") {
			t.Errorf("versionString = %q, want %q...", got, tc.want)
		}
	}
	for shell, marker := range map[string]string{"bash": "__start_lockctl", "zsh": "#compdef lockctl", "fish": "complete -c lockctl"} {
		if out := c.run("completion", shell).want(t, ExitOK).stdout; !strings.Contains(out, marker) {
			t.Errorf("completion %s lacks %q", shell, marker)
		}
	}
	// resources and commands complete
	out := c.run("__complete", "acq").want(t, ExitOK).stdout
	if !strings.Contains(out, "acquire") {
		t.Errorf("completion of acq: %q", out)
	}
}

// redisErr is an error reply of Redis, as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (e redisErr) RedisError()   {}

var _ redis.Error = redisErr("")

// TestClassifyCauses: the status and message of each cause of a service
// error, for the errors no local server can produce.
func TestClassifyCauses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{fmt.Errorf("x: %w", redisErr("MOVED 3999 127.0.0.1:7001")), ExitUsage, "is a Cluster node (it answered MOVED): use redis+cluster://"},
		{fmt.Errorf("x: %w", redisErr("ERR This instance has cluster support disabled")), ExitUsage, "is a standalone server, not a Cluster"},
		{fmt.Errorf("x: %w", redisErr("NOPERM User w has no permissions to access the 'lockcoord:x' key")), ExitPermission, "key pattern"},
		{fmt.Errorf("x: %w", redisErr("NOPERM User w has no permissions to access the 'c' channel")), ExitPermission, "channel pattern"},
		{fmt.Errorf("x: %w", redisErr("NOAUTH Authentication required.")), ExitAuth, "refused the credentials"},
		{&pgconn.PgError{Severity: "ERROR", Code: "42501", Message: "permission denied for table locks"}, ExitPermission, "grant the role"},
		{&pgconn.PgError{Severity: "FATAL", Code: "3D000", Message: `database "x" does not exist`}, ExitUsage, "check the database of --database-url"},
		{fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), ExitAuth, "TLS handshake failed"},
		{&tlsHandshakeError{addr: "h:1", err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}}, ExitAuth, "TLS handshake failed"},
		{&tlsHandshakeError{addr: "h:1", err: errors.New("no answer")}, ExitUnavailable, "TLS handshake failed: no answer"},
		{fmt.Errorf("redisstore: acquire plan/1: %w", coordinator.ErrUnavailable), ExitUnavailable, "cannot reach Redis at r:1"},
	} {
		code, msg := classify(tc.err, "r:1", "p:2/db")
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("classify(%v) = %d %q, want %d containing %q", tc.err, code, msg, tc.code, tc.msg)
		}
	}
}

// TestDiagnosticsLimit: a negative --limit is refused, with the JSON of a
// check that could not run.
func TestDiagnosticsLimit(t *testing.T) {
	c := newCLI(t, "")
	r := c.run("diagnostics", "--limit", "-1", "--json").want(t, ExitUsage)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m["exit_code"] != float64(ExitUsage) || !strings.Contains(r.stderr, "--limit") {
		t.Fatalf("diagnostics --limit -1: %q %q", r.stdout, r.stderr)
	}
}
