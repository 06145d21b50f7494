package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// startCLI runs lockctl in the background until ctx ends; its stdout can
// be read while it runs, and the exit status comes on the channel.
func startCLI(ctx context.Context, c *cli, args ...string) (*lockedBuffer, <-chan int) {
	out, errb := &lockedBuffer{}, &lockedBuffer{}
	a := newApp(nil, out, errb, func(k string) string { return c.env[k] })
	a.sigs = make(chan os.Signal)
	done := make(chan int, 1)
	go func() { done <- a.execute(ctx, append([]string{"--redis-url", c.url}, args...)) }()
	return out, done
}

// printed waits until out holds s.
func printed(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "output "+s, func() bool { return strings.Contains(out.String(), s) })
}

func TestLeadRunsWhileLeading(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	r := c.run("lead", "sched", "--candidate", "a", "--value", "host-a:80", "--", "sh", "-c",
		`echo "$LOCKCOORD_TOKEN $LOCKCOORD_RESOURCE $LOCKCOORD_OWNER $LOCKCOORD_ELECTION $LOCKCOORD_VALUE"; exit 70`).want(t, 70)
	if f := strings.Fields(r.stdout); len(f) != 5 || f[1] != "election/sched" || f[2] != "a" || f[3] != "sched" || f[4] != "host-a:80" {
		t.Fatalf("command saw %q", r.stdout)
	}
	if out := c.run("leader", "sched").want(t, ExitConflict).stdout; out != "sched: vacant\n" {
		t.Fatalf("leader after the resignation: %q", out)
	}
	// campaigning waits for the office; --wait bounds it
	ctx := t.Context()
	co := coordinator.New(storeOn(t, mr))
	defer co.Close(ctx)
	if _, err := co.Acquire(ctx, coordinator.Election("sched"), "b", coordinator.Meta("host-b:80")); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	c.run("lead", "sched", "--wait", "0s", "--", "touch", marker).want(t, ExitConflict)
	done := make(chan result)
	go func() { done <- c.run("lead", "sched", "--", "touch", marker) }()
	waitQueued(t, mr, coordinator.Election("sched"))
	if _, err := co.Release(ctx, coordinator.Election("sched"), "b"); err != nil {
		t.Fatal(err)
	}
	(<-done).want(t, ExitOK)
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the command did not run once leading")
	}
	c.run("lead", "sched", "--candidate", "bad\x01", "--", "true").want(t, ExitUsage)
	c.run("lead", "sched", "--value", "bad\x01", "--", "true").want(t, ExitUsage)
	c.run("lead", "bad/name\x01", "--", "true").want(t, ExitUsage)
}

func TestLeader(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	ctx := t.Context()
	co := coordinator.New(storeOn(t, mr))
	defer co.Close(ctx)
	l, err := co.Acquire(ctx, coordinator.Election("db"), "n1", coordinator.Meta("10.0.0.1:5432"))
	if err != nil {
		t.Fatal(err)
	}
	var v leaderView
	c.run("leader", "db", "--json").want(t, ExitOK).json(t, &v)
	if v.Vacant || v.Candidate != "n1" || v.Value != "10.0.0.1:5432" || v.Term != l.Token || v.Since == nil || v.ExpiresAt == nil {
		t.Fatalf("leader --json = %+v", v)
	}
	if out := c.run("leader", "db").want(t, ExitOK).stdout; !strings.Contains(out, `db: n1 leads, term `) || !strings.Contains(out, `value "10.0.0.1:5432"`) {
		t.Fatalf("leader = %q", out)
	}
	c.run("leader", "db", "--json", "--redis-url", "redis://"+closedPort(t)).want(t, ExitUnavailable)
}

func TestLeaderWatch(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	ctx, cancel := context.WithCancel(t.Context())
	out, done := startCLI(ctx, c, "leader", "db", "--watch", "--json")
	printed(t, out, `"vacant":true`)
	co := coordinator.New(storeOn(t, mr))
	defer co.Close(t.Context())
	r := coordinator.Election("db")
	if _, err := co.Acquire(t.Context(), r, "n1", coordinator.Meta("v1")); err != nil {
		t.Fatal(err)
	}
	printed(t, out, `"candidate":"n1"`)
	if _, err := co.Release(t.Context(), r, "n1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the vacancy", func() bool { return strings.Count(out.String(), `"vacant":true`) == 2 })
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	ls := jsonLines[leaderView](t, result{stdout: out.String()})
	if len(ls) != 3 || ls[1].Value != "v1" || ls[2].Term != ls[1].Term || ls[2].Since == nil {
		t.Fatalf("leaders %+v", ls)
	}
}

func TestWatchCommand(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	for _, bad := range []string{"plan", "Plan/", "plan/a\x01"} {
		c.run("watch", bad).want(t, ExitUsage)
	}
	var je jsonError
	c.run("watch", "Plan/", "--json").want(t, ExitUsage).json(t, &je)
	ctx, cancel := context.WithCancel(t.Context())
	out, done := startCLI(ctx, c, "watch", "plan/", "--json")
	text, tdone := startCLI(ctx, c, "watch", "plan/7")
	co := coordinator.New(storeOn(t, mr))
	defer co.Close(t.Context())
	// the watches start soon: change leases until both print
	err := testutil.Poll(ctx, 20*time.Millisecond, func() error {
		if strings.Contains(out.String(), "released") && strings.Contains(text.String(), "released") {
			return nil
		}
		if _, err := co.Acquire(ctx, coordinator.Plan("7"), "w1", coordinator.Meta("m")); err != nil {
			return err
		}
		_, err := co.Release(ctx, coordinator.Plan("7"), "w1")
		if err == nil {
			err = errors.New("not printed yet")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if code, tcode := <-done, <-tdone; code != ExitOK || tcode != ExitOK {
		t.Fatalf("exit %d, %d", code, tcode)
	}
	evs := jsonLines[eventView](t, result{stdout: out.String()})
	if len(evs) == 0 || evs[0].Resource != "plan/7" || evs[0].Token == 0 || evs[0].Time == nil || evs[0].EventID == "" {
		t.Fatalf("events %+v", evs)
	}
	if !strings.Contains(out.String(), `"token":"`) || !strings.Contains(text.String(), `owner="w1"`) || !strings.Contains(text.String(), `meta="m"`) {
		t.Fatalf("output %s\n%s", out.String(), text.String())
	}
}

// The lines of a gap and of a vacancy after a term.
func TestWriteEventAndLeaderText(t *testing.T) {
	var b strings.Builder
	if err := writeEvent(&b, false, coordinator.Event{Kind: coordinator.EventGap, Lease: coordinator.Lease{Resource: coordinator.Resource{Type: "plan"}}, Gap: "lost"}); err != nil {
		t.Fatal(err)
	}
	if err := writeLeader(&b, false, coordinator.Leader{Election: "e", Token: 7, Since: time.UnixMilli(0), Gap: true}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "gap plan/: events may be missing: lost\ne: vacant since 1970-01-01T00:00:00.000Z (after term 7) (after a gap: changes may have been missed)\n" {
		t.Fatalf("%q", got)
	}
}
