package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestVersion(t *testing.T) {
	r := newCLI(t, "").run("version").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "lockctl ") || !strings.Contains(r.stdout, "go1.") {
		t.Fatalf("version: %q", r.stdout)
	}
	newCLI(t, "").run("version", "extra").want(t, ExitUsage)
}

func TestKey(t *testing.T) {
	c := newCLI(t, "")
	r := c.run("key", "plan/42").want(t, ExitOK)
	s := redisstore.New(nil)
	if want := s.Layout().LeaseKey(coordinator.Plan("42")) + "\n"; r.stdout != want {
		t.Fatalf("key = %q, want %q", r.stdout, want)
	}
	r = c.run("key", "--prefix", "app", "--partitions", "64", "project/alpha").want(t, ExitOK)
	s = redisstore.New(nil, redisstore.WithPrefix("app"), redisstore.WithPartitions(64))
	if want := s.Layout().LeaseKey(coordinator.Project("alpha")) + "\n"; r.stdout != want {
		t.Fatalf("key = %q, want %q", r.stdout, want)
	}
	// the environment is the fallback, the flag wins over it
	c.env["LOCKCOORD_PREFIX"] = "envp"
	r = c.run("key", "plan/1").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "envp:{") {
		t.Fatalf("key with LOCKCOORD_PREFIX: %q", r.stdout)
	}
	r = c.run("key", "--prefix", "flagp", "plan/1").want(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "flagp:{") {
		t.Fatalf("key with --prefix over LOCKCOORD_PREFIX: %q", r.stdout)
	}
	c.env["LOCKCOORD_PARTITIONS"] = "many"
	r = c.run("key", "plan/1").want(t, ExitUsage)
	if !strings.Contains(r.stderr, "LOCKCOORD_PARTITIONS") {
		t.Fatalf("bad env not named: %q", r.stderr)
	}
	delete(c.env, "LOCKCOORD_PARTITIONS")
	for _, bad := range [][]string{
		{"key", "Plan/1"}, {"key", "plan"}, {"key", "plan/"}, {"key"}, {"key", "a/1", "b/2"},
		{"key", "--prefix", "a{b}", "plan/1"}, {"key", "--partitions", "-1", "plan/1"},
	} {
		c.run(bad...).want(t, ExitUsage)
	}
	r = c.run("key", "Plan/1")
	if !strings.Contains(r.stderr, "[a-z][a-z0-9_-]{0,63}") {
		t.Fatalf("bad type error does not name the rule: %q", r.stderr)
	}
}

func TestAcquireRenewRelease(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)

	var got outcomeView
	c.run("acquire", "plan/42", "--owner", "w1", "--ttl", "30s", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outAcquired || got.Owner != "w1" || got.Count != 1 || got.Token == 0 || !got.Held {
		t.Fatalf("acquire: %+v", got)
	}
	s := storeOn(t, mr)
	if got.Key != s.Layout().LeaseKey(coordinator.Plan("42")) {
		t.Fatalf("key %q, want %q", got.Key, s.Layout().LeaseKey(coordinator.Plan("42")))
	}
	if ttl := mr.TTL(got.Key); ttl != 30*time.Second {
		t.Fatalf("TTL of the key %s, want 30s", ttl)
	}
	token := got.Token

	// another owner: conflict, exit 3, the holder named in one line and in JSON
	r := c.run("acquire", "plan/42", "--owner", "w2", "--json").want(t, ExitConflict)
	var conflict outcomeView
	r.json(t, &conflict)
	if conflict.Outcome != outConflict || conflict.Owner != "w1" || conflict.Token != token {
		t.Fatalf("conflict JSON: %+v", conflict)
	}
	if !strings.Contains(r.stderr, `"w1"`) || !strings.Contains(r.stderr, strconv.FormatUint(token, 10)) {
		t.Fatalf("conflict message does not name the holder: %q", r.stderr)
	}

	// re-entry: same token, count 2; plain output names the outcome
	r = c.run("acquire", "plan/42", "--owner", "w1").want(t, ExitOK)
	if want := fmt.Sprintf("reentered plan/42 owner=\"w1\" token=%d count=2 ", token); !strings.HasPrefix(r.stdout, want) {
		t.Fatalf("re-entry output %q, want prefix %q", r.stdout, want)
	}

	// renew with the type's default TTL (plan: 5m), and by token
	c.run("renew", "plan/42", "--owner", "w1", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outRenewed || got.Count != 2 || got.Token != token {
		t.Fatalf("renew: %+v", got)
	}
	if ttl := mr.TTL(got.Key); ttl != coordinator.DefaultPlanTTL {
		t.Fatalf("TTL after renew %s, want %s", ttl, coordinator.DefaultPlanTTL)
	}
	c.run("renew", "plan/42", "--owner", "w1", "--token", strconv.FormatUint(token, 10)).want(t, ExitOK)
	r = c.run("renew", "plan/42", "--owner", "w1", "--token", strconv.FormatUint(token+1, 10), "--json").want(t, ExitConflict)
	r.json(t, &got)
	if got.Outcome != outNotHeld {
		t.Fatalf("renew with another token: %+v", got)
	}
	c.run("renew", "plan/42", "--owner", "w2").want(t, ExitConflict)
	c.run("renew", "plan/7", "--owner", "w1", "--json").want(t, ExitConflict).json(t, &got)
	if got.Outcome != outExpired {
		t.Fatalf("renew of a free resource: %+v", got)
	}

	// release: one hold, then the last; then not held
	c.run("release", "plan/42", "--owner", "w2").want(t, ExitConflict)
	c.run("release", "plan/42", "--owner", "w1", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outDecremented || got.Count != 1 {
		t.Fatalf("release: %+v", got)
	}
	c.run("release", "plan/42", "--owner", "w1", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outReleased || got.Count != 0 || got.Held {
		t.Fatalf("release: %+v", got)
	}
	if mr.Exists(got.Key) {
		t.Fatal("the key outlived the last release")
	}
	c.run("release", "plan/42", "--owner", "w1").want(t, ExitConflict)

	// --all drops every hold
	for range 3 {
		c.run("acquire", "project/p", "--owner", "w1").want(t, ExitOK)
	}
	c.run("release", "project/p", "--owner", "w1", "--all", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outReleased || got.Count != 0 {
		t.Fatalf("release --all: %+v", got)
	}

	// usage errors: no owner, bad owner, bad ttl, bad wait
	for _, bad := range [][]string{
		{"acquire", "plan/1"}, {"acquire", "plan/1", "--owner", "a\tb"}, {"acquire", "plan/1", "--owner", "w", "--ttl", "0s"},
		{"acquire", "plan/1", "--owner", "w", "--wait", "-1s"}, {"renew", "plan/1"}, {"release", "plan/1"},
		{"release", "plan/1", "--force", "--owner", "w"}, {"acquire", "plan/1", "--owner", "w", "--ttl", "soon"},
	} {
		c.run(bad...).want(t, ExitUsage)
	}
}

func TestAcquireWait(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	c.run("acquire", "plan/1", "--owner", "a").want(t, ExitOK)
	c.run("acquire", "plan/1", "--owner", "b", "--wait", "20ms").want(t, ExitConflict)
	done := make(chan result)
	go func() { done <- c.run("acquire", "plan/1", "--owner", "b", "--wait", "20s", "--json") }()
	waitQueued(t, mr, coordinator.Plan("1"))
	c.run("release", "plan/1", "--owner", "a").want(t, ExitOK)
	var got outcomeView
	(<-done).want(t, ExitOK).json(t, &got)
	if got.Owner != "b" || got.Outcome != outAcquired {
		t.Fatalf("waiter: %+v", got)
	}
	if mr.TTL(got.Key) != coordinator.DefaultPlanTTL {
		t.Fatalf("waiter's lease TTL %s", mr.TTL(got.Key))
	}
}

func TestForceRelease(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	c.run("acquire", "plan/9", "--owner", "dead").want(t, ExitOK)
	c.run("acquire", "plan/9", "--owner", "dead").want(t, ExitOK)
	var got outcomeView
	c.run("release", "--force", "plan/9", "--json").want(t, ExitOK).json(t, &got)
	if got.Outcome != outForced || got.Owner != "dead" {
		t.Fatalf("force: %+v", got)
	}
	s := storeOn(t, mr)
	r := coordinator.Plan("9")
	if mr.Exists(s.Layout().LeaseKey(r)) {
		t.Fatal("lease still in Redis after release --force")
	}
	// the forced event is in the partition's stream
	entries, err := mr.Stream(s.Layout().StreamKey(s.Layout().Partition(r)))
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1].Values
	if !containsPair(last, "event", "forced") || !containsPair(last, "owner", "dead") {
		t.Fatalf("last event %v, want a forced event of dead", last)
	}
	c.run("release", "--force", "plan/9").want(t, ExitConflict)
	r2 := c.run("release", "plan/9", "--force")
	r2.want(t, ExitConflict)
	if !strings.Contains(r2.stderr, "free") {
		t.Fatalf("force of a free lease: %q", r2.stderr)
	}
}

func containsPair(kv []string, k, v string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == k && kv[i+1] == v {
			return true
		}
	}
	return false
}

func TestInspect(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	r := c.run("inspect", "plan/42").want(t, ExitConflict)
	if !strings.Contains(r.stdout, "state") || !strings.Contains(r.stdout, "free") {
		t.Fatalf("inspect of a free resource: %q", r.stdout)
	}
	var acq outcomeView
	c.run("acquire", "plan/42", "--owner", "w1", "--ttl", "90s", "--json").want(t, ExitOK).json(t, &acq)
	mr.FastForward(30 * time.Second)
	var v leaseView
	c.run("inspect", "plan/42", "--json").want(t, ExitOK).json(t, &v)
	if v.Owner != "w1" || v.Token != acq.Token || v.Count != 1 || v.PTTLMillis == nil || *v.PTTLMillis != 60_000 {
		t.Fatalf("inspect: %+v (pttl %v)", v, v.PTTLMillis)
	}
	if v.Fields["owner"] != "w1" || v.Fields["token"] != strconv.FormatUint(acq.Token, 10) {
		t.Fatalf("inspect fields: %v", v.Fields)
	}
	if !v.ExpiresAt.Equal(*acq.ExpiresAt) || v.Key != acq.Key {
		t.Fatalf("inspect %+v, acquire said %+v", v, acq)
	}
	r = c.run("inspect", "plan/42").want(t, ExitOK)
	for _, want := range []string{"owner        w1", "pttl         1m0s", acq.Key, "fields       acquired_at="} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
	c.run("inspect", "plan").want(t, ExitUsage)
}

func TestList(t *testing.T) {
	mr, url := newMiniredis(t)
	s := storeOn(t, mr)
	ctx := t.Context()
	const n = 600
	want := map[string]string{}
	for i := range n {
		r := coordinator.Resource{Type: []string{"plan", "project", "job"}[i%3], ID: strconv.Itoa(i)}
		owner := "w" + strconv.Itoa(i%5)
		if _, err := s.Acquire(ctx, coordinator.Request{Resource: r, Owner: owner, TTL: time.Minute, RequestID: "r" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		want[r.String()] = owner
	}
	// a key that looks like a lease but is not one of this prefix's
	mr.Set("lockcoord:{99}:lock:plan:x", "junk")
	c := newCLI(t, url)
	all := jsonLines[leaseView](t, c.run("list", "--json", "--count", "40").want(t, ExitOK))
	if len(all) != n {
		t.Fatalf("list: %d leases, want %d", len(all), n)
	}
	seen := map[string]bool{}
	for _, v := range all {
		if want[v.Resource] != v.Owner || seen[v.Resource] || v.PTTLMillis == nil || *v.PTTLMillis != 60_000 {
			t.Fatalf("list row %+v (owner want %q, seen %v)", v, want[v.Resource], seen[v.Resource])
		}
		seen[v.Resource] = true
	}
	some := jsonLines[leaseView](t, c.run("list", "--json", "--type", "project", "--owner", "w2").want(t, ExitOK))
	wantN := 0
	for res, o := range want {
		if strings.HasPrefix(res, "project/") && o == "w2" {
			wantN++
		}
	}
	if len(some) != wantN || wantN == 0 {
		t.Fatalf("list --type project --owner w2: %d, want %d", len(some), wantN)
	}
	for _, v := range some {
		if v.Type != "project" || v.Owner != "w2" {
			t.Fatalf("filtered row %+v", v)
		}
	}
	r := c.run("list", "--type", "job", "--owner", "w0").want(t, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.HasPrefix(lines[0], "RESOURCE") || !strings.Contains(lines[0], "EXPIRES IN") {
		t.Fatalf("table header %q", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if !strings.HasPrefix(f[0], "job/") || f[1] != "w0" || f[2] != "exclusive" || f[5] != "1m0s" {
			t.Fatalf("table row %q", l)
		}
	}
	if len(lines)-1 == 0 {
		t.Fatal("no job leases of w0 listed")
	}
	// nothing held: no JSON line, a bare header
	c2 := newCLI(t, url)
	some = jsonLines[leaseView](t, c2.run("list", "--prefix", "empty", "--json").want(t, ExitOK))
	if len(some) != 0 {
		t.Fatalf("empty list: %v", some)
	}
	for _, bad := range [][]string{{"list", "--type", "Plan"}, {"list", "--owner", "a\nb"}, {"list", "--count", "0"}, {"list", "x"}} {
		c.run(bad...).want(t, ExitUsage)
	}
}

func TestErrors(t *testing.T) {
	// unreachable: a port nobody listens on
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := newCLI(t, "redis://"+addr).run("inspect", "plan/1").want(t, ExitUnavailable)
	if !strings.Contains(r.stderr, "cannot reach Redis at "+addr) {
		t.Fatalf("unreachable: %q", r.stderr)
	}
	newCLI(t, "redis://"+addr).run("acquire", "plan/1", "--owner", "w").want(t, ExitUnavailable)

	// authentication refused
	mr, url := newMiniredis(t)
	mr.RequireAuth("s3cret")
	r = newCLI(t, url).run("list").want(t, ExitAuth)
	if !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, mr.Addr()) {
		t.Fatalf("no auth: %q", r.stderr)
	}
	r = newCLI(t, "redis://:wrong@"+mr.Addr()).run("list").want(t, ExitAuth)
	if strings.Contains(r.stderr, "wrong") && !strings.Contains(r.stderr, "WRONGPASS") {
		t.Fatalf("the password leaked: %q", r.stderr)
	}
	newCLI(t, "redis://:s3cret@"+mr.Addr()).run("list").want(t, ExitOK)

	// bad URLs never echo the password
	for _, u := range []string{"http://u:topsecret@h", "redis://u:topsecret@h/1/2", "redis://h?bogus=1", "redis+ring://h", "::"} {
		r = newCLI(t, u).run("list").want(t, ExitUsage)
		if strings.Contains(r.stderr, "topsecret") {
			t.Fatalf("password in %q", r.stderr)
		}
	}

	// a partition count other than the recorded one
	_, url2 := newMiniredis(t)
	c := newCLI(t, url2)
	c.run("--partitions", "8", "acquire", "plan/1", "--owner", "w").want(t, ExitOK)
	r = c.run("--partitions", "16", "acquire", "plan/2", "--owner", "w").want(t, ExitUsage)
	if !strings.Contains(r.stderr, "partition") {
		t.Fatalf("mismatch: %q", r.stderr)
	}
	// without --partitions the recorded count is used
	var v leaseView
	c.run("inspect", "plan/1", "--json").want(t, ExitOK).json(t, &v)
	s8 := redisstore.New(nil, redisstore.WithPartitions(8))
	if v.Key != s8.Layout().LeaseKey(coordinator.Plan("1")) {
		t.Fatalf("inspect used key %s, want %s", v.Key, s8.Layout().LeaseKey(coordinator.Plan("1")))
	}

	// bad global flags
	for _, args := range [][]string{
		{"--log-level", "loud", "list"}, {"--log-format", "xml", "list"}, {"--timeout", "0s", "list"}, {"nosuch"}, {"list", "--nosuch"},
	} {
		newCLI(t, url2).run(args...).want(t, ExitUsage)
	}
}

func TestHelp(t *testing.T) {
	a := &app{}
	root := a.rootCmd()
	n := 0
	for _, cmd := range append(root.Commands(), root) {
		if cmd.Name() == "help" {
			continue
		}
		n++
		if strings.TrimSpace(cmd.Example) == "" {
			t.Errorf("%s has no Example", cmd.CommandPath())
		}
		args := []string{"--help"}
		if cmd != root {
			args = []string{cmd.Name(), "--help"}
		}
		r := newCLI(t, "").run(args...).want(t, ExitOK)
		if !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help shows no examples", cmd.CommandPath())
		}
	}
	if n < 8 {
		t.Fatalf("only %d commands", n)
	}
}
