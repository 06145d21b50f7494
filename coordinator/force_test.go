package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// holdUntilLost runs a Hold on c that waits until its lease is lost and
// returns the cause its function saw and Hold's error.
func holdUntilLost(t *testing.T, c *coordinator.Coordinator, r coordinator.Resource, ttl time.Duration, held chan<- coordinator.Lease) (cause, err error) {
	t.Helper()
	err = c.Hold(t.Context(), r, "worker", func(ctx context.Context, l coordinator.Lease) error {
		held <- l
		<-ctx.Done()
		cause = context.Cause(ctx)
		return nil
	}, coordinator.TTL(ttl))
	return cause, err
}

// checkForced fails t unless err reports a lease forced off by by: a
// *LostError matching ErrLeaseLost and ErrLeaseForced, not ErrExpired.
func checkForced(t *testing.T, what string, err error, by string) {
	t.Helper()
	var le *coordinator.LostError
	switch {
	case !errors.As(err, &le) || !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, coordinator.ErrLeaseForced):
		t.Errorf("%s: %v, want a LostError matching ErrLeaseLost and ErrLeaseForced", what, err)
	case errors.Is(err, coordinator.ErrExpired):
		t.Errorf("%s: %v reports an expiry", what, err)
	case !strings.Contains(err.Error(), "forced off by "+by):
		t.Errorf("%s: %q does not name the operator %s", what, err, by)
	}
}

// TestForceReleaseReachesTheHolder (issue 16.8, 16.13): an operator's
// ForceRelease, from another coordinator, reaches the holder's Hold as
// "forced" by that operator at its next renewal, not as "expired"; the
// event names the operator.
func TestForceReleaseReachesTheHolder(t *testing.T) {
	e := newMiniEnv(t)
	ops := coordinator.New(e.store)
	defer func() { _ = ops.Close(context.Background()) }()
	r := coordinator.Plan("forced")
	held := make(chan coordinator.Lease, 1)
	type outcome struct{ cause, err error }
	done := make(chan outcome, 1)
	go func() {
		cause, err := holdUntilLost(t, e.c, r, 300*time.Millisecond, held)
		done <- outcome{cause, err}
	}()
	l := <-held
	got, err := ops.ForceRelease(t.Context(), r, "alice")
	if err != nil || got.Token != l.Token || got.Owner != "worker" {
		t.Fatalf("ForceRelease = %+v, %v; want the worker's lease", got, err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(waitBound):
		t.Fatal("the Hold did not learn of the forced release")
	}
	checkForced(t, "the Hold's context", o.cause, `"alice"`)
	checkForced(t, "Hold", o.err, `"alice"`)
	if ev := e.events(t, r); len(ev) != 2 || ev[1] != "forced" {
		t.Fatalf("events %v, want acquired, forced", ev)
	}
}

// TestForceReleaseOfItsOwnHolder: a holder in the forcing coordinator
// learns at once, without a renewal.
func TestForceReleaseOfItsOwnHolder(t *testing.T) {
	e := newMiniEnv(t)
	r := coordinator.Plan("own")
	held := make(chan coordinator.Lease, 1)
	done := make(chan error, 1)
	go func() {
		cause, _ := holdUntilLost(t, e.c, r, time.Hour, held) // no renewal for 20 minutes
		done <- cause
	}()
	<-held
	if _, err := e.c.ForceRelease(t.Context(), r, "bob"); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-done:
		checkForced(t, "the Hold's context", cause, `"bob"`)
	case <-time.After(waitBound):
		t.Fatal("the Hold did not learn of its own coordinator's forced release")
	}
}

// TestForceReleaseRefusals: bad input, a free resource, a store that
// cannot force, a closed coordinator.
func TestForceReleaseRefusals(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	for _, tc := range []struct {
		r  coordinator.Resource
		by string
	}{{coordinator.Plan("1"), ""}, {coordinator.Plan("1"), "  "}, {coordinator.Plan(" "), "alice"}} {
		if _, err := e.c.ForceRelease(ctx, tc.r, tc.by); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("ForceRelease(%s, %q): %v, want ErrInvalid", tc.r, tc.by, err)
		}
	}
	if _, err := e.c.ForceRelease(ctx, coordinator.Plan("free"), "alice"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Errorf("ForceRelease of a free resource: %v, want ErrNotHeld", err)
	}
	plain := coordinator.New(newFakeStore())
	if _, err := plain.ForceRelease(ctx, coordinator.Plan("1"), "alice"); !errors.Is(err, coordinator.ErrUnsupported) {
		t.Errorf("ForceRelease on a store that is no Forcer: %v, want ErrUnsupported", err)
	}
	_ = plain.Close(ctx)
	if _, err := plain.ForceRelease(ctx, coordinator.Plan("1"), "alice"); !errors.Is(err, coordinator.ErrClosed) {
		t.Errorf("ForceRelease after Close: %v, want ErrClosed", err)
	}
}

// TestExpiryIsNotForced: a lease that expired (no forced event) is
// reported as expired, also when the store can tell the two apart.
func TestExpiryIsNotForced(t *testing.T) {
	e := newMiniEnv(t)
	r := coordinator.Plan("expired")
	held := make(chan coordinator.Lease, 1)
	done := make(chan error, 1)
	go func() {
		cause, _ := holdUntilLost(t, e.c, r, 300*time.Millisecond, held)
		done <- cause
	}()
	<-held
	e.mr.Del(e.store.Layout().LeaseKey(r)) // gone without an event, as by expiry
	select {
	case cause := <-done:
		if !errors.Is(cause, coordinator.ErrLeaseLost) || errors.Is(cause, coordinator.ErrLeaseForced) {
			t.Fatalf("cause %v, want a loss that is not forced", cause)
		}
	case <-time.After(waitBound):
		t.Fatal("the Hold did not learn of the loss")
	}
}

// TestOrphan (issue 16.13): Orphan stops the keep-alives and closes the
// coordinator without releasing: the lease stays in the store, with no
// release event, until its TTL runs out; no renewal follows.
func TestOrphan(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("orphan")
	l, err := e.c.Acquire(ctx, r, "worker", coordinator.TTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ka := e.c.KeepAlive(ctx, l)
	// a renewal happens while the coordinator keeps the lease
	testutil.Eventually(t, waitBound, "a renewal", func() bool { return count(e.events(t, r), "renewed") > 0 })
	e.c.Orphan()
	e.c.Orphan() // a second call does nothing
	if err := ka.Err(); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("the keep-alive after Orphan: %v, want ErrClosed", err)
	}
	renewals := count(e.events(t, r), "renewed")
	got, err := e.store.Inspect(ctx, r)
	if err != nil || got.Owner != "worker" || got.Token != l.Token {
		t.Fatalf("after Orphan: %+v, %v; want the lease kept", got, err)
	}
	if _, err := e.c.Acquire(ctx, coordinator.Plan("x"), "worker"); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("Acquire after Orphan: %v, want ErrClosed", err)
	}
	if err := e.c.Close(ctx); err != nil {
		t.Fatalf("Close after Orphan: %v", err)
	}
	if n := e.c.Held(r, "worker"); n != 0 {
		t.Fatalf("Held after Orphan = %d", n)
	}
	// left to expire: no renewal, no release
	e.mr.FastForward(time.Second)
	if _, err := e.store.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("the orphaned lease outlived its TTL: %v", err)
	}
	ev := e.events(t, r)
	if count(ev, "renewed") != renewals || count(ev, "released") != 0 {
		t.Fatalf("events after Orphan: %v", ev)
	}
}

var _ coordinator.Forcer = (*redisstore.Store)(nil)
