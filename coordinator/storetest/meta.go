package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// testMetaAndRemaining: a lease keeps its metadata (Meta): every lease
// the store reports carries it, a re-entry with metadata replaces it and
// one without keeps it, and a conflict names it. Every lease from the
// store, and a conflict, says the time left by the store's clock.
func testMetaAndRemaining(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("meta")
	left := func(what string, l coordinator.Lease, ttl time.Duration) {
		t.Helper()
		if l.Remaining <= ttl-time.Minute || l.Remaining > ttl {
			t.Fatalf("%s: Remaining %v, want about %v (%+v)", what, l.Remaining, ttl, l)
		}
	}
	l := need(t)(c.Acquire(ctx, r, "w1", coordinator.Meta("host-1 pid 7"), coordinator.TTL(time.Hour)))
	if l.Meta != "host-1 pid 7" {
		t.Fatalf("Acquire with Meta: %+v", l)
	}
	left("Acquire", l, time.Hour)
	got := need(t)(c.Inspect(ctx, r))
	if got.Meta != l.Meta {
		t.Fatalf("Inspect = %+v, want meta %q", got, l.Meta)
	}
	left("Inspect", got, time.Hour)
	if ls := need2(t)(c.Holders(ctx, r)); len(ls) != 1 || ls[0].Meta != l.Meta || ls[0].Remaining <= 0 {
		t.Fatalf("Holders = %+v, want the meta and the time left", ls)
	}
	_, err := c.Acquire(ctx, r, "w2")
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Meta != l.Meta || ce.Remaining <= time.Hour-time.Minute || ce.Remaining > time.Hour {
		t.Fatalf("conflict: %v (%+v), want the holder's meta and time left", err, ce)
	}
	if l := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Minute))); l.Meta != "host-1 pid 7" || l.Count != 2 {
		t.Fatalf("re-entry without Meta: %+v, want the meta kept", l)
	}
	if l := need(t)(c.Acquire(ctx, r, "w1", coordinator.Meta("phase: review"))); l.Meta != "phase: review" {
		t.Fatalf("re-entry with Meta: %+v, want the meta replaced", l)
	}
	n := need(t)(c.Renew(ctx, r, "w1", coordinator.TTL(2*time.Hour)))
	if n.Meta != "phase: review" {
		t.Fatalf("Renew: %+v, want the meta kept", n)
	}
	left("Renew", n, 2*time.Hour)
	if d := need(t)(c.Release(ctx, r, "w1")); d.Meta != "phase: review" || d.Count != 2 || d.Remaining <= 0 {
		t.Fatalf("Release of one hold: %+v, want the meta and the time left", d)
	}
	// a lease without metadata reports none
	p := coordinator.Plan("no-meta")
	if l := need(t)(c.Acquire(ctx, p, "w1", coordinator.TTL(time.Minute))); l.Meta != "" {
		t.Fatalf("lease without Meta: %+v", l)
	} else {
		left("Acquire without Meta", l, time.Minute)
	}
	// the longest metadata is kept whole
	long := make([]byte, coordinator.MaxMetaLen)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	if l := need(t)(c.Acquire(ctx, coordinator.Plan("long-meta"), "w1", coordinator.Meta(string(long)))); l.Meta != string(long) {
		t.Fatalf("the longest meta came back as %d bytes", len(l.Meta))
	}
	if l := need(t)(s.Inspect(ctx, coordinator.Plan("long-meta"))); l.Meta != string(long) {
		t.Fatalf("Inspect of the longest meta: %d bytes", len(l.Meta))
	}
}
