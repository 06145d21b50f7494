package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testcluster"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// onBothRedis runs f with the URL of a miniredis and of a real Redis.
func onBothRedis(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("miniredis", func(t *testing.T) {
		_, url := newMiniredis(t)
		f(t, url)
	})
	t.Run("redis", func(t *testing.T) {
		f(t, "redis://"+testredis.Start(t).Addr+"/0")
	})
}

// TestAcquireShared: acquire --shared lets several owners in, each with
// its own token, and conflicts with an exclusive request both ways; the
// JSON says the mode; list and inspect show every holder.
func TestAcquireShared(t *testing.T) {
	onBothRedis(t, func(t *testing.T, url string) {
		c := newCLI(t, url)
		var a, b outcomeView
		c.run("acquire", "--shared", "project/apollo", "--owner", "r1", "--json").want(t, ExitOK).json(t, &a)
		c.run("acquire", "--shared", "project/apollo", "--owner", "r2", "--json", "--ttl", "1h").want(t, ExitOK).json(t, &b)
		if a.Outcome != outAcquired || a.Mode != "shared" || b.Mode != "shared" || b.Token <= a.Token {
			t.Fatalf("shared acquisitions %+v, %+v", a, b)
		}
		r := c.run("acquire", "project/apollo", "--owner", "w", "--json").want(t, ExitConflict)
		var ce outcomeView
		r.json(t, &ce)
		if ce.Outcome != outConflict || ce.Mode != "shared" || ce.Holders != 2 || ce.Owner != "r1" {
			t.Fatalf("exclusive request on a shared resource: %+v", ce)
		}
		if !strings.Contains(r.stderr, "held shared by 2 owners") {
			t.Fatalf("stderr %q", r.stderr)
		}
		// inspect: one object per holder, earliest expiry first
		hs := jsonLines[leaseView](t, c.run("inspect", "project/apollo", "--json").want(t, ExitOK))
		if len(hs) != 2 || hs[0].Owner != "r1" || hs[1].Owner != "r2" || hs[1].Token != b.Token ||
			hs[0].Mode != "shared" || hs[0].Holders != 2 || hs[0].Fields["count:r1"] != "1" || hs[0].Fields["count:r2"] != "" {
			t.Fatalf("inspect --json of a shared resource: %+v", hs)
		}
		txt := c.run("inspect", "project/apollo").want(t, ExitOK).stdout
		for _, want := range []string{"owner        r1", "owner        r2", "mode         shared", "holders      2", "\n\nresource"} {
			if !strings.Contains(txt, want) {
				t.Fatalf("inspect lacks %q:\n%s", want, txt)
			}
		}
		c.run("acquire", "plan/x", "--owner", "w").want(t, ExitOK)
		ls := jsonLines[leaseView](t, c.run("list", "--json").want(t, ExitOK))
		modes := map[string]string{}
		for _, l := range ls {
			modes[l.Resource+" "+l.Owner] = l.Mode
		}
		if len(ls) != 3 || modes["project/apollo r1"] != "shared" || modes["project/apollo r2"] != "shared" || modes["plan/x w"] != "exclusive" {
			t.Fatalf("list --json: %+v", ls)
		}
		tbl := c.run("list", "--type", "project", "--owner", "r2").want(t, ExitOK).stdout
		if lines := strings.Split(strings.TrimSpace(tbl), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "MODE") ||
			strings.Fields(lines[1])[1] != "r2" || strings.Fields(lines[1])[2] != "shared" {
			t.Fatalf("list table:\n%s", tbl)
		}
		// an exclusive holder conflicts with a shared request
		r = c.run("acquire", "--shared", "plan/x", "--owner", "r1").want(t, ExitConflict)
		if !strings.Contains(r.stderr, `held by "w"`) {
			t.Fatalf("stderr %q", r.stderr)
		}
		// the exclusive holder asking shared re-enters its exclusive lease
		var re outcomeView
		c.run("acquire", "--shared", "plan/x", "--owner", "w", "--json").want(t, ExitOK).json(t, &re)
		if re.Outcome != outReentered || re.Mode != "exclusive" || re.Count != 2 {
			t.Fatalf("exclusive holder asking shared: %+v", re)
		}
	})
}

// TestAcquirePermits: --permits caps a shared resource; the (N+1)-th
// owner conflicts; another cap is bad input naming the recorded one.
func TestAcquirePermits(t *testing.T) {
	onBothRedis(t, func(t *testing.T, url string) {
		c := newCLI(t, url)
		for _, o := range []string{"w1", "w2"} {
			r := c.run("acquire", "--shared", "job/model-api", "--permits", "2", "--owner", o).want(t, ExitOK)
			if !strings.Contains(r.stdout, "mode=shared permits=2") {
				t.Fatalf("acquire --permits: %q", r.stdout)
			}
		}
		var ce outcomeView
		r := c.run("acquire", "--shared", "job/model-api", "--permits", "2", "--owner", "w3", "--json").want(t, ExitConflict)
		r.json(t, &ce)
		if ce.Permits != 2 || ce.Holders != 2 || !strings.Contains(r.stderr, "(cap 2)") {
			t.Fatalf("third owner under a cap of 2: %+v, %q", ce, r.stderr)
		}
		r = c.run("acquire", "--shared", "job/model-api", "--permits", "3", "--owner", "w3").want(t, ExitUsage)
		if !strings.Contains(r.stderr, "2") || !strings.Contains(strings.ToLower(r.stderr), "permits") {
			t.Fatalf("cap mismatch: %q", r.stderr)
		}
		tbl := c.run("list").want(t, ExitOK).stdout
		if strings.Count(tbl, "shared/2") != 2 {
			t.Fatalf("list of a capped resource:\n%s", tbl)
		}
		c.run("release", "job/model-api", "--owner", "w1").want(t, ExitOK)
		c.run("acquire", "--shared", "job/model-api", "--owner", "w3").want(t, ExitOK) // joins under the recorded cap
	})
}

// TestAcquireSeveral: several resources are taken all or nothing: a busy
// one leaves the others free; then every lease is taken, one line each.
func TestAcquireSeveral(t *testing.T) {
	onBothRedis(t, func(t *testing.T, url string) {
		c := newCLI(t, url)
		c.run("acquire", "plan/42", "--owner", "other").want(t, ExitOK)
		var ce outcomeView
		r := c.run("acquire", "--shared", "project/apollo", "plan/42", "plan/43", "--owner", "w", "--json").want(t, ExitConflict)
		r.json(t, &ce)
		if ce.Outcome != outConflict || ce.Resource != "plan/42" || ce.Owner != "other" {
			t.Fatalf("conflict: %+v", ce)
		}
		for _, res := range []string{"project/apollo", "plan/43"} {
			c.run("inspect", res).want(t, ExitConflict) // free: nothing held
		}
		c.run("release", "plan/42", "--owner", "other").want(t, ExitOK)
		ls := jsonLines[outcomeView](t, c.run("acquire", "--shared", "project/apollo", "plan/42", "plan/43",
			"--owner", "w", "--ttl", "2m", "--json").want(t, ExitOK))
		if len(ls) != 3 || ls[0].Resource != "plan/42" || ls[1].Resource != "plan/43" || ls[2].Resource != "project/apollo" ||
			ls[2].Mode != "shared" || ls[0].Mode != "exclusive" || ls[0].Outcome != outAcquired {
			t.Fatalf("acquire of three: %+v", ls)
		}
		txt := c.run("acquire", "--shared", "project/apollo", "plan/42", "--owner", "w").want(t, ExitOK).stdout
		if lines := strings.Split(strings.TrimSpace(txt), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "reentered plan/42") ||
			!strings.Contains(lines[1], "mode=shared") {
			t.Fatalf("re-entry of two:\n%s", txt)
		}
	})
}

// TestAcquireModeFlagsBad: the mode flags' bad input is exit 2 with a
// message naming the rule, before Redis is reached.
func TestAcquireModeFlagsBad(t *testing.T) {
	c := newCLI(t, "redis://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"acquire", "--owner", "w"}, "needs a RESOURCE"},
		{[]string{"acquire", "job/x", "--permits", "2", "--owner", "w"}, "--permits caps the --shared resources"},
		{[]string{"acquire", "--shared", "job/x", "--permits", "0", "--owner", "w"}, "bad --permits 0"},
		{[]string{"acquire", "plan/1", "--shared", "plan/1", "--owner", "w"}, "plan/1 is given twice"},
		{[]string{"acquire", "plan/1", "Plan/2", "--owner", "w"}, "bad resource"},
		{[]string{"acquire", "--shared", "plan/1"}, "needs --owner"},
		{[]string{"run", "--shared", "plan/1", "sh"}, "needs -- before the COMMAND"},
		{[]string{"run", "--", "sh"}, "needs RESOURCE"},
		{[]string{"run", "plan/1", "plan/2", "--"}, "needs a COMMAND"},
		{[]string{"run", "plan/a-b", "plan/a_b", "--", "true"}, "would both set LOCKCOORD_TOKEN_PLAN_A_B"},
	} {
		r := c.run(tc.args...).want(t, ExitUsage)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("lockctl %s: stderr %q, want %q", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
	}
	many := []string{"acquire", "--owner", "w"}
	for i := range coordinator.MaxClaims + 1 {
		many = append(many, "plan/"+strconv.Itoa(i))
	}
	if r := c.run(many...).want(t, ExitUsage); !strings.Contains(r.stderr, "at most 64 resources") {
		t.Errorf("too many resources: %q", r.stderr)
	}
}

// TestRunSeveral: run holds a shared project and an exclusive plan while
// the command runs, with one token variable per resource, and releases
// both; a busy resource holds nothing and exits 3.
func TestRunSeveral(t *testing.T) {
	onBothRedis(t, func(t *testing.T, url string) {
		c := newCLI(t, url)
		c.run("acquire", "--shared", "project/apollo", "--owner", "reader").want(t, ExitOK)
		r := c.run("run", "--shared", "project/apollo", "plan/42", "--owner", "runner", "--", "sh", "-c",
			`echo "$LOCKCOORD_TOKEN_PLAN_42 $LOCKCOORD_TOKEN_PROJECT_APOLLO ${LOCKCOORD_TOKEN:-none} $LOCKCOORD_OWNER"; `+
				`printf '%s\n' "$LOCKCOORD_RESOURCES" | paste -sd, -`).want(t, ExitOK)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		f := strings.Fields(lines[0])
		if len(lines) != 2 || len(f) != 4 || f[2] != "none" || f[3] != "runner" || lines[1] != "plan/42,project/apollo" {
			t.Fatalf("command saw %q", r.stdout)
		}
		for _, tok := range f[:2] {
			if n, err := strconv.ParseUint(tok, 10, 64); err != nil || n == 0 {
				t.Fatalf("token %q: %v", tok, err)
			}
		}
		hs := jsonLines[leaseView](t, c.run("inspect", "project/apollo", "--json").want(t, ExitOK))
		if len(hs) != 1 || hs[0].Owner != "reader" {
			t.Fatalf("after run, project/apollo: %+v (want the reader alone)", hs)
		}
		c.run("inspect", "plan/42").want(t, ExitConflict)
		// one resource: LOCKCOORD_TOKEN and its named twin agree
		r = c.run("run", "--shared", "project/apollo", "--", "sh", "-c",
			`test "$LOCKCOORD_TOKEN" = "$LOCKCOORD_TOKEN_PROJECT_APOLLO" && echo "$LOCKCOORD_RESOURCE"`).want(t, ExitOK)
		if strings.TrimSpace(r.stdout) != "project/apollo" {
			t.Fatalf("one shared resource: %q", r.stdout)
		}
		// a busy resource: nothing held, the command does not run
		c.run("acquire", "plan/43", "--owner", "other").want(t, ExitOK)
		r = c.run("run", "--shared", "project/apollo", "plan/43", "--", "sh", "-c", "echo ran").want(t, ExitConflict)
		if strings.Contains(r.stdout, "ran") {
			t.Fatal("the command ran without its leases")
		}
		hs = jsonLines[leaseView](t, c.run("inspect", "project/apollo", "--json").want(t, ExitOK))
		if len(hs) != 1 {
			t.Fatalf("a refused run left a hold: %+v", hs)
		}
	})
}

// TestRunSeveralLost: a lease of several forced off while the command
// runs ends it, and run exits 5 naming it.
func TestRunSeveralLost(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	done := make(chan result, 1)
	go func() {
		done <- c.run("run", "--shared", "project/p", "plan/lost", "--ttl", "600ms", "--", "sleep", "30")
	}()
	stealWhenHeld(t, mr, coordinator.Plan("lost"))
	r := (<-done).want(t, ExitLeaseLost)
	if !strings.Contains(r.stderr, "plan/lost") || !strings.Contains(r.stderr, `lease forced off by "ops-test"`) {
		t.Fatalf("run after its plan was forced: %q", r.stderr)
	}
	s := storeOn(t, mr)
	if mr.Exists(s.Layout().LeaseKey(coordinator.Project("p"))) {
		t.Fatal("run left its shared hold behind")
	}
}

// TestModesOnCluster: on a Redis Cluster, acquire and run take resources
// of several slots all or nothing, and inspect (one MULTI on the key's
// slot, with TIME) and list (a pipeline per master) show every holder.
func TestModesOnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var env testcluster.Env
	env.Cluster, env.ClusterErr = testcluster.StartCluster(ctx, testcluster.ClusterConfig{Replicas: -1})
	t.Cleanup(env.Close)
	addrs := env.NeedCluster(t).Addrs()
	c := newCLI(t, "redis://"+addrs[0]+"?addr="+strings.Join(addrs[1:], "&addr="))
	proj, plan := "project/apollo", "plan/7" // partitions 1 and 0: two slots
	ls := jsonLines[outcomeView](t, c.run("acquire", "--shared", proj, plan, "--owner", "w1", "--json").want(t, ExitOK))
	if len(ls) != 2 || ls[1].Mode != "shared" || ls[1].Partition == ls[0].Partition {
		t.Fatalf("acquire across slots: %+v", ls)
	}
	c.run("acquire", "--shared", proj, "--owner", "w2").want(t, ExitOK)
	c.run("acquire", "--shared", proj, "plan/7", "--owner", "w3").want(t, ExitConflict)
	hs := jsonLines[leaseView](t, c.run("inspect", proj, "--json").want(t, ExitOK))
	if len(hs) != 2 || hs[0].Owner != "w1" || hs[1].Owner != "w2" {
		t.Fatalf("inspect on the Cluster: %+v", hs)
	}
	if all := jsonLines[leaseView](t, c.run("list", "--json").want(t, ExitOK)); len(all) != 3 {
		t.Fatalf("list on the Cluster: %+v", all)
	}
	r := c.run("run", "--shared", proj, "plan/8", "--", "sh", "-c",
		`test -n "$LOCKCOORD_TOKEN_PLAN_8" && test -n "$LOCKCOORD_TOKEN_PROJECT_APOLLO" && echo ok`).want(t, ExitOK)
	if strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("run on the Cluster: %q", r.stdout)
	}
}

// TestRenewReleaseShared: renew and release act on the owner's own hold
// of a shared resource and leave the other holders' alone.
func TestRenewReleaseShared(t *testing.T) {
	onBothRedis(t, func(t *testing.T, url string) {
		c := newCLI(t, url)
		c.run("acquire", "--shared", "project/p", "--owner", "r1", "--ttl", "1m").want(t, ExitOK)
		c.run("acquire", "--shared", "project/p", "--owner", "r2", "--ttl", "1m").want(t, ExitOK)
		var rn outcomeView
		c.run("renew", "project/p", "--owner", "r2", "--ttl", "1h", "--json").want(t, ExitOK).json(t, &rn)
		if rn.Outcome != outRenewed || rn.Mode != "shared" || rn.Owner != "r2" {
			t.Fatalf("renew of a shared hold: %+v", rn)
		}
		var rl outcomeView
		c.run("release", "project/p", "--owner", "r1", "--json").want(t, ExitOK).json(t, &rl)
		if rl.Outcome != outReleased || rl.Owner != "r1" {
			t.Fatalf("release of a shared hold: %+v", rl)
		}
		c.run("release", "project/p", "--owner", "r1").want(t, ExitConflict)
		hs := jsonLines[leaseView](t, c.run("inspect", "project/p", "--json").want(t, ExitOK))
		if len(hs) != 1 || hs[0].Owner != "r2" || hs[0].Holders != 1 || !hs[0].ExpiresAt.After(time.Now().Add(50*time.Minute)) {
			t.Fatalf("after r1's release: %+v", hs)
		}
	})
}

// TestAcquireSeveralWaits: acquire --wait with several resources holds
// nothing while it waits, and takes them all once the busy one is free.
func TestAcquireSeveralWaits(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	c.run("acquire", "plan/1", "--owner", "other").want(t, ExitOK)
	done := make(chan result, 1)
	go func() {
		done <- c.run("acquire", "--shared", "project/p", "plan/1", "--owner", "w", "--wait", "30s", "--json")
	}()
	s := storeOn(t, mr)
	// the waiter is queued for the busy plan, and holds nothing meanwhile
	testutil.Eventually(t, 10*time.Second, "the waiter queued", func() bool { return mr.Exists(s.Layout().QueueKey(coordinator.Plan("1"))) })
	c.run("inspect", "project/p").want(t, ExitConflict)
	c.run("release", "plan/1", "--owner", "other").want(t, ExitOK)
	r := (<-done).want(t, ExitOK)
	ls := jsonLines[outcomeView](t, r)
	if len(ls) != 2 || ls[0].Resource != "plan/1" || ls[0].Owner != "w" || ls[1].Mode != "shared" {
		t.Fatalf("acquire --wait of two: %+v", ls)
	}
}
