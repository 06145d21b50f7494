package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// ExpiryEvents is a Watcher that reports expiries (EventExpired) by
// itself, within a second of the lease's end, and so wakes Observe on a
// leader that died. RunWatcher tests it when declared.
const ExpiryEvents Capability = "expiry-events"

// eventWait bounds a wait for an event the test expects: a failure
// bound, not a measure of speed.
const eventWait = 15 * time.Second

// RunWatcher runs the conformance tests of the optional Watcher
// capability, and of the elections built on it, against stores from h,
// which must implement it: every change of a watched lease arrives, in
// order, with its kind and lease; other resources' changes do not; a
// watcher that does not read gets a gap, never a silent drop, and blocks
// nobody; the channel is closed when the watch's context ends.
func RunWatcher(t *testing.T, h Harness) {
	tests := []conformanceTest{
		{"WatchKinds", testWatchKinds},
		{"WatchType", testWatchType},
		{"WatchOverflowGap", testWatchOverflowGap},
		{"WatchEndsWithContext", testWatchEnds},
		{"WatchValidates", testWatchValidates},
		{"ElectionTerms", testElectionTerms},
		{"ElectionProclaim", testElectionProclaim},
	}
	if has(h, ExpiryEvents) {
		tests = append(tests, conformanceTest{"WatchExpired", testWatchExpired})
	}
	runTests(t, h, tests)
}

// nextEvent returns the next event of ch, failing t when none comes
// within eventWait or ch is closed.
func nextEvent(t *testing.T, ch <-chan coordinator.Event) coordinator.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(eventWait):
		t.Fatal("no event came")
	}
	return coordinator.Event{}
}

// expectEvent reads the next event of ch and checks its kind, owner and
// count.
func expectEvent(t *testing.T, ch <-chan coordinator.Event, kind coordinator.EventKind, r coordinator.Resource, owner string, count int) coordinator.Event {
	t.Helper()
	ev := nextEvent(t, ch)
	if ev.Kind != kind || ev.Lease.Resource != r || ev.Lease.Owner != owner || ev.Lease.Count != count {
		t.Fatalf("event = %+v, want %s of %s by %q count %d", ev, kind, r, owner, count)
	}
	if ev.Time.IsZero() || ev.ID == "" || ev.Lease.Token == 0 {
		t.Fatalf("event %+v lacks its time, id or token", ev)
	}
	return ev
}

func watchOf(t *testing.T, ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource) <-chan coordinator.Event {
	t.Helper()
	var (
		ch  <-chan coordinator.Event
		err error
	)
	if r.ID == "" {
		ch, err = c.WatchType(ctx, r.Type)
	} else {
		ch, err = c.Watch(ctx, r)
	}
	if err != nil {
		t.Fatalf("watch %v: %v", r, err)
	}
	return ch
}

// testWatchKinds: acquire, re-enter, renew, release one hold, release the
// last arrive in order with the lease after each change; another
// resource's changes do not.
func testWatchKinds(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r, other := coordinator.Resource{Type: "job", ID: "kinds"}, coordinator.Resource{Type: "job", ID: "other"}
	ch := watchOf(t, ctx, c, r)
	need(t)(c.Acquire(ctx, other, "w9"))
	l := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Minute)))
	need(t)(c.Acquire(ctx, r, "w1"))
	need(t)(c.Renew(ctx, r, "w1", coordinator.TTL(2*time.Minute)))
	need(t)(c.Release(ctx, r, "w1"))
	need(t)(c.Release(ctx, r, "w1"))
	a := expectEvent(t, ch, coordinator.EventAcquired, r, "w1", 1)
	if a.Lease.Token != l.Token || !a.Lease.AcquiredAt.Equal(l.AcquiredAt) || !a.Lease.ExpiresAt.Equal(l.ExpiresAt) {
		t.Fatalf("acquired event %+v, want the lease %+v", a.Lease, l)
	}
	expectEvent(t, ch, coordinator.EventReentered, r, "w1", 2)
	rn := expectEvent(t, ch, coordinator.EventRenewed, r, "w1", 2)
	if got := rn.Lease.ExpiresAt.Sub(rn.Time); got != 2*time.Minute {
		t.Fatalf("renewed event: expires %v after its time, want 2m", got)
	}
	expectEvent(t, ch, coordinator.EventDecremented, r, "w1", 1)
	rel := expectEvent(t, ch, coordinator.EventReleased, r, "w1", 0)
	if rel.Lease.Token != l.Token {
		t.Fatalf("released event %+v, want token %d", rel, l.Token)
	}
	need(t)(c.Release(ctx, other, "w9"))
	need(t)(c.Acquire(ctx, r, "w2"))
	expectEvent(t, ch, coordinator.EventAcquired, r, "w2", 1) // nothing of other came in between
}

// testWatchType: a watch of a type gets every resource of it, and no
// other type.
func testWatchType(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	ch := watchOf(t, ctx, c, coordinator.Resource{Type: "batch"})
	a, b := coordinator.Resource{Type: "batch", ID: "a"}, coordinator.Resource{Type: "batch", ID: "b/1"}
	need(t)(c.Acquire(ctx, coordinator.Resource{Type: "batchx", ID: "a"}, "w1"))
	need(t)(c.Acquire(ctx, coordinator.Plan("a"), "w1"))
	need(t)(c.Acquire(ctx, a, "w1"))
	need(t)(c.Acquire(ctx, b, "w2"))
	need(t)(c.Release(ctx, a, "w1"))
	got := map[coordinator.Resource][]coordinator.EventKind{}
	for range 3 {
		ev := nextEvent(t, ch)
		got[ev.Lease.Resource] = append(got[ev.Lease.Resource], ev.Kind)
	}
	if fmt.Sprint(got[a]) != "[acquired released]" || fmt.Sprint(got[b]) != "[acquired]" || len(got) != 2 {
		t.Fatalf("events by resource = %v", got)
	}
}

// testWatchOverflowGap: a watcher that does not read blocks nobody: the
// changes go on while it sleeps. When it reads, it gets every event in
// order, or a gap in place of those that did not fit (a store that reads
// its log as the watcher reads may deliver them all), and later events.
func testWatchOverflowGap(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Resource{Type: "job", ID: "flood"}
	ch := watchOf(t, ctx, c, r)
	need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Hour)))
	renewals := coordinator.EventBuffer + 10
	for range renewals {
		need(t)(c.Renew(ctx, r, "w1", coordinator.TTL(time.Hour)))
	}
	need(t)(c.Release(ctx, r, "w1"))
	n, gap, again := 0, false, false
	for {
		ev := nextEvent(t, ch)
		if (ev.Kind == coordinator.EventGap || ev.Kind == coordinator.EventReleased) && !again {
			need(t)(c.Acquire(ctx, r, "w2")) // read on: the watcher takes events again
			again = true
		}
		if ev.Kind == coordinator.EventGap {
			if gap || ev.Lease.Resource != r || ev.Gap == "" || ev.ID != "" {
				t.Fatalf("gap event %+v (after a gap: %v)", ev, gap)
			}
			gap = true
			continue
		}
		if ev.Kind == coordinator.EventAcquired && ev.Lease.Owner == "w2" {
			break
		}
		n++
		if want := wantFlood(n, renewals); !gap && ev.Kind != want {
			t.Fatalf("event %d: %+v, want %s", n, ev, want)
		}
	}
	if !gap && n != renewals+2 {
		t.Fatalf("%d events and no gap, want all %d", n, renewals+2)
	}
}

// wantFlood is the kind of the n-th event of testWatchOverflowGap.
func wantFlood(n, renewals int) coordinator.EventKind {
	switch {
	case n == 1:
		return coordinator.EventAcquired
	case n <= renewals+1:
		return coordinator.EventRenewed
	}
	return coordinator.EventReleased
}

// testWatchEnds: the channel is closed when the watch's context ends, and
// when the coordinator closes.
func testWatchEnds(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	wctx, cancel := context.WithCancel(ctx)
	ch := watchOf(t, wctx, c, coordinator.Plan("x"))
	cancel()
	drained(t, ch)
	c2 := coordinator.New(s)
	ch2 := watchOf(t, ctx, c2, coordinator.Resource{Type: "plan"})
	if err := c2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	drained(t, ch2)
	if _, err := c2.Watch(ctx, coordinator.Plan("x")); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
}

// drained reads ch until it is closed, failing t when that does not
// happen within eventWait.
func drained(t *testing.T, ch <-chan coordinator.Event) {
	t.Helper()
	timeout := time.After(eventWait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the watch's channel was not closed")
		}
	}
}

// testWatchValidates: bad input is ErrInvalid, also at the store.
func testWatchValidates(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	if _, err := c.Watch(ctx, coordinator.Resource{Type: "Plan", ID: "1"}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Watch of a bad type: %v", err)
	}
	if _, err := c.WatchType(ctx, ""); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("WatchType of no type: %v", err)
	}
	w := s.(coordinator.Watcher)
	if _, err := w.Watch(ctx, coordinator.Resource{Type: "plan", ID: "a\x00"}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("store Watch of a bad id: %v", err)
	}
}

// testWatchExpired: a lease that runs out is reported as expired, with
// the lease it was.
func testWatchExpired(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Resource{Type: "job", ID: "expiring"}
	ch := watchOf(t, ctx, c, r)
	l := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Minute)))
	expectEvent(t, ch, coordinator.EventAcquired, r, "w1", 1)
	h.Expire(t, s, r)
	ev := expectEvent(t, ch, coordinator.EventExpired, r, "w1", 0)
	if ev.Lease.Token != l.Token {
		t.Fatalf("expired event %+v, want token %d", ev, l.Token)
	}
}
