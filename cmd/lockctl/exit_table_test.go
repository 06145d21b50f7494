package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestExitStatuses produces every row of the table of exit statuses with
// a real invocation: a row without a case here fails the test.
func TestExitStatuses(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	s := storeOn(t, mr)
	ctx := t.Context()
	cases := map[string]func(t *testing.T) result{
		"0": func(*testing.T) result { return c.run("key", "plan/1") },
		"1": func(t *testing.T) result {
			// a lease hash lockctl cannot read: an unexpected reply
			key := s.Layout().LeaseKey(coordinator.Plan("corrupt"))
			mr.HSet(key, "owner", "w", "count", "abc", "token", "1", "acquired_at", "1", "expires_at", "2")
			return c.run("inspect", "plan/corrupt")
		},
		"2": func(*testing.T) result { return c.run("acquire", "plan/1", "--owner", "w", "--no-such-flag") },
		"3": func(t *testing.T) result {
			c.run("acquire", "plan/busy", "--owner", "holder").want(t, ExitOK)
			return c.run("acquire", "plan/busy", "--owner", "other")
		},
		"4": func(t *testing.T) result { return c.run("--redis-url", "redis://"+closedPort(t), "inspect", "plan/1") },
		"5": func(t *testing.T) result {
			// the command forces the lease off: run's lease is lost
			argv := helperCommand(t, "lockctl", "--redis-url", url, "release", "--force", "plan/lost")
			return c.run(append([]string{"run", "plan/lost", "--"}, argv...)...)
		},
		"6": func(t *testing.T) result {
			locked, _ := newMiniredis(t)
			locked.RequireAuth("right")
			return c.run("--redis-url", "redis://:wrong@"+locked.Addr()+"/0", "inspect", "plan/1")
		},
		"7": func(t *testing.T) result {
			srv := testredis.Start(t)
			if _, err := srv.Do(ctx, "ACL", "SETUSER", "noinspect", "on", ">pw", "~*", "&*", "+@all", "-hgetall"); err != nil {
				t.Fatal(err)
			}
			r := c.run("--redis-url", "redis://noinspect:pw@"+srv.Addr+"/0", "inspect", "plan/1")
			if !strings.Contains(r.stderr, "the ACL user needs +hgetall") {
				t.Errorf("the missing permission is not named: %q", r.stderr)
			}
			return r
		},
		"8": func(t *testing.T) result {
			// a lease held in Redis and missing from the mirror
			db := testpg.New(t)
			_, url := newMiniredis(t)
			pc := newCLI(t, url)
			pc.env["LOCKCOORD_DATABASE_URL"] = db.URL
			pc.run("migrate").want(t, ExitOK)
			pc.run("acquire", "plan/unmirrored", "--owner", "w").want(t, ExitOK)
			return pc.run("diagnostics", "--missing-grace", "-1s")
		},
		"125": func(*testing.T) result { return c.run("run", "plan/r", "--", "sh", "-c", "exit 3") },
		"126": func(t *testing.T) result {
			f := filepath.Join(t.TempDir(), "not-executable")
			if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return c.run("run", "plan/r", "--", f)
		},
		"127": func(*testing.T) result { return c.run("run", "plan/r", "--", "no-such-command-"+testutil.RandomHex(4)) },
		"128+N": func(*testing.T) result {
			return c.run("run", "plan/r", "--", "sh", "-c", "kill -USR1 $$")
		},
	}
	// what the one line on stderr must say
	messages := map[string]string{
		"1": `corrupt data: lease of plan/corrupt: count`, "2": "unknown flag: --no-such-flag", "3": `held by "holder"`,
		"4": "cannot reach Redis at 127.0.0.1:", "5": "lease lost", "6": "refused the credentials: WRONGPASS",
		"7": "refused a command: NOPERM", "125": "the command exited with status 3", "126": "permission denied",
		"127": "executable file not found",
	}
	for _, row := range exitTable {
		t.Run(row.code+"-"+row.name, func(t *testing.T) {
			run, ok := cases[row.code]
			if !ok {
				t.Fatalf("no case produces exit status %s (%s)", row.code, row.name)
			}
			want := 128 + int(syscall.SIGUSR1)
			if row.code != "128+N" {
				want, _ = strconv.Atoi(row.code)
			}
			r := run(t).want(t, want)
			if m := messages[row.code]; !strings.Contains(r.stderr, m) {
				t.Fatalf("stderr %q does not say %q", r.stderr, m)
			}
		})
	}
	if len(cases) != len(exitTable) {
		t.Fatalf("%d cases for %d rows", len(cases), len(exitTable))
	}
}

// TestExitTableInDocs: docs/operations.md holds the table lockctl --help
// prints, row for row.
func TestExitTableInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), exitTableMarkdown()) {
		t.Fatalf("docs/operations.md does not hold the table of exit statuses; it should read:\n%s", exitTableMarkdown())
	}
	help := newCLI(t, "").run("--help").want(t, ExitOK).stdout
	for _, r := range exitTable {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(r.code) + ` +` + regexp.QuoteMeta(r.name) + ` `).MatchString(help) {
			t.Errorf("lockctl --help lacks the row %s %s", r.code, r.name)
		}
	}
}

// TestCommandHelpStatuses: the "Exit status" paragraph of every command
// names only statuses of the table.
func TestCommandHelpStatuses(t *testing.T) {
	codes := map[string]bool{}
	for _, r := range exitTable {
		codes[r.code] = true
	}
	statusRe := regexp.MustCompile(`(?:^|[\s,;(])(\d+(?:\+N)?)(?: ([a-z]))`)
	root := newApp(nil, nil, nil, nil).rootCmd()
	checked := 0
	for _, cmd := range root.Commands() {
		_, para, ok := strings.Cut(cmd.Long, "Exit status")
		if !ok {
			continue
		}
		checked++
		for _, m := range statusRe.FindAllStringSubmatch(para, -1) {
			if !codes[m[1]] && !slices.Contains([]string{"1-8", "255"}, m[1]) {
				t.Errorf("lockctl %s --help names exit status %s, which is not in the table", cmd.Name(), m[1])
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d commands document their exit statuses", checked)
	}
}

// TestRunCollisionStatus: a command's status of lockctl's own becomes
// 125 (or --collision-status N), with the command's status on stderr;
// --collision-status 0 passes it through; others pass unchanged.
func TestRunCollisionStatus(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	for code := ExitInternal; code <= ExitUnhealthy; code++ {
		exit := "exit " + strconv.Itoa(code)
		r := c.run("run", "plan/c", "--", "sh", "-c", exit).want(t, ExitCollision)
		if !strings.Contains(r.stderr, "exited with status "+strconv.Itoa(code)) {
			t.Fatalf("status %d: stderr %q does not give the command's status", code, r.stderr)
		}
		c.run("run", "plan/c", "--collision-status", "99", "--", "sh", "-c", exit).want(t, 99)
		c.run("run", "plan/c", "--collision-status", "0", "--", "sh", "-c", exit).want(t, code)
	}
	c.run("run", "plan/c", "--", "sh", "-c", "exit 125").want(t, ExitCollision)
	for _, code := range []int{9, 42, 124, 126, 127, 200} {
		r := c.run("run", "plan/c", "--", "sh", "-c", "exit "+strconv.Itoa(code)).want(t, code)
		if r.stderr != "" {
			t.Fatalf("status %d passed through with stderr %q", code, r.stderr)
		}
	}
	c.run("run", "plan/c", "--collision-status", "256", "--", "true").want(t, ExitUsage)
	c.run("run", "plan/c", "--collision-status", "-1", "--", "true").want(t, ExitUsage)
}

// TestRunStripsCredentials: the command does not see the Redis and
// Postgres URLs (with their passwords) unless --keep-credentials.
func TestRunStripsCredentials(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	t.Setenv("LOCKCOORD_REDIS_URL", "redis://:s3cret@10.0.0.1:6379/0")
	t.Setenv("LOCKCOORD_DATABASE_URL", "postgres://u:s3cret@db/audit")
	t.Setenv("LOCKCOORD_MIRROR_PASSWORD", "s3cret")
	t.Setenv("LOCKCOORD_PREFIX", "kept")
	t.Setenv("OTHER_URL", "kept")
	show := []string{"sh", "-c", `env | grep -E '^(LOCKCOORD_|OTHER_)' | sort`}
	r := c.run(append([]string{"run", "plan/env", "--"}, show...)...).want(t, ExitOK)
	if strings.Contains(r.stdout, "s3cret") || !strings.Contains(r.stdout, "LOCKCOORD_PREFIX=kept") ||
		!strings.Contains(r.stdout, "OTHER_URL=kept") || !strings.Contains(r.stdout, "LOCKCOORD_TOKEN=") {
		t.Fatalf("the command's environment:\n%s", r.stdout)
	}
	r = c.run(append([]string{"run", "plan/env", "--keep-credentials", "--"}, show...)...).want(t, ExitOK)
	for _, v := range []string{"LOCKCOORD_REDIS_URL=redis://:s3cret@", "LOCKCOORD_DATABASE_URL=postgres://u:s3cret@", "LOCKCOORD_MIRROR_PASSWORD=s3cret"} {
		if !strings.Contains(r.stdout, v) {
			t.Fatalf("--keep-credentials: %s missing from\n%s", v, r.stdout)
		}
	}
	for entry, want := range map[string]bool{
		"LOCKCOORD_REDIS_URL=x": true, "LOCKCOORD_TEST_DATABASE_URL=x": true, "lockcoord_redis_url=x": true,
		"LOCKCOORD_SECRET=x": true, "LOCKCOORD_CREDENTIALS_FILE=x": true,
		"LOCKCOORD_TOKEN=1": false, "LOCKCOORD_PREFIX=x": false, "REDIS_URL=x": false, "LOCKCOORD_OWNER=x": false,
	} {
		if got := isCredentialEnv(entry); got != want {
			t.Errorf("isCredentialEnv(%q) = %v", entry, got)
		}
	}
}

// TestServiceMismatches: a URL that does not match the service it
// reaches is a usage error that names the cause, not an internal error.
func TestServiceMismatches(t *testing.T) {
	srv := testredis.Start(t)
	c := newCLI(t, "")
	ctx := context.Background()
	if _, err := srv.Do(ctx, "PING"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url, want string
	}{
		{"redis://" + srv.Addr + "/99", "no such database"},
		{"redis+cluster://" + srv.Addr, "is a standalone server, not a Cluster"},
		{"rediss://" + srv.Addr + "/0", "TLS handshake failed: the server speaks plain text"},
	} {
		r := c.run("--redis-url", tc.url, "inspect", "plan/1").want(t, ExitUsage)
		if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, srv.Addr) {
			t.Errorf("%s: stderr %q, want %q and the address", tc.url, r.stderr, tc.want)
		}
	}
}

// TestPostgresMismatches: an unknown database, TLS asked of a Postgres
// without it, and a statement refused to the role each get the status of
// their cause and a message naming it.
func TestPostgresMismatches(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	db := testpg.New(t)
	c.env["LOCKCOORD_DATABASE_URL"] = db.URL
	c.run("migrate").want(t, ExitOK)

	// a database that does not exist
	c.env["LOCKCOORD_DATABASE_URL"] = strings.Replace(db.URL, db.Name, "no_such_db_"+testutil.RandomHex(4), 1)
	r := c.run("migrate").want(t, ExitUsage)
	if !strings.Contains(r.stderr, "3D000") || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("unknown database: %q", r.stderr)
	}

	// sslmode=require against a server that refuses TLS (it answers the
	// SSLRequest with 'N', as a Postgres without ssl does)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 8)
			if _, err := io.ReadFull(conn, buf); err == nil {
				_, _ = conn.Write([]byte("N"))
			}
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	c.env["LOCKCOORD_DATABASE_URL"] = "postgres://u@" + l.Addr().String() + "/db?sslmode=require"
	r = c.run("migrate").want(t, ExitUsage)
	if !strings.Contains(r.stderr, "does not accept TLS") || !strings.Contains(r.stderr, "sslmode=require") {
		t.Errorf("TLS refused: %q", r.stderr)
	}

	// a role that may connect but not read the tables
	role := "lockctl_noperm_" + testutil.RandomHex(4)
	db.AdminExec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { db.AdminExec(t, "DROP ROLE "+role) })
	c.env["LOCKCOORD_DATABASE_URL"] = strings.Replace(db.URL, "postgres://postgres@", "postgres://"+role+"@", 1)
	r = c.run("cleanup").want(t, ExitPermission)
	if !strings.Contains(r.stderr, "permission denied for table") || !strings.Contains(r.stderr, "42501") {
		t.Errorf("permission denied: %q", r.stderr)
	}
}
