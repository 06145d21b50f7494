package storetest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// sharedTests are the tests of the Shared capability.
var sharedTests = []conformanceTest{
	{"SharedConflicts", testSharedConflicts},
	{"SharedPermits", testSharedPermits},
	{"SharedExpiryPerHolder", testSharedExpiry},
	{"SharedRenewPerHolder", testSharedRenew},
	{"SharedKeepAlivePerHolder", testSharedKeepAlive},
	{"SharedReentry", testSharedReentry},
	{"SharedUpgrade", testSharedUpgrade},
	{"SharedUpgradeRace", testSharedUpgradeRace},
	{"SharedTokensIncrease", testSharedTokens},
	{"SharedRepeatedRequestIDs", testSharedRepeated},
	{"SharedCloseAndReleaseAll", testSharedClose},
	{"SharedAcquireAllHierarchy", testSharedHierarchy},
}

// shared is the option of a shared acquisition.
var shared = coordinator.Shared()

// owners returns the owners of ls.
func owners(ls []coordinator.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Owner
	}
	return out
}

// testSharedUnsupported: a store without the Shared capability refuses
// shared and capped requests with ErrUnsupported and takes nothing.
func testSharedUnsupported(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r, q := coordinator.Plan("unsupported"), coordinator.Project("unsupported")
	for name, opt := range map[string]coordinator.AcquireOption{"Shared": shared, "Permits(2)": coordinator.Permits(2)} {
		if _, err := c.Acquire(ctx, r, "w1", opt); !errors.Is(err, coordinator.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("Acquire with %s on a store without shared leases: %v, want ErrUnsupported", name, err)
		}
	}
	claims := []coordinator.Claim{{Resource: q}, {Resource: r, Mode: coordinator.ModeShared}}
	if _, err := c.AcquireAll(ctx, "w1", claims); !errors.Is(err, coordinator.ErrUnsupported) {
		t.Fatalf("AcquireAll with a shared claim: %v, want ErrUnsupported", err)
	}
	free(t, ctx, c, "after the refusals", r, q)
	if c.Held(q, "w1") != 0 {
		t.Fatal("a refused AcquireAll is tracked")
	}
}

// testSharedConflicts: shared holders coexist; exclusive conflicts with
// them and they with it; the conflict names the holder that expires
// first, the mode and the number of holders; Holders and Inspect report
// them.
func testSharedConflicts(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("sh")
	l1 := need(t)(c.Acquire(ctx, r, "r1", shared, coordinator.TTL(time.Minute)))
	l2 := need(t)(c.Acquire(ctx, r, "r2", shared, coordinator.TTL(2*time.Minute)))
	for _, l := range []coordinator.Lease{l1, l2} {
		if l.Mode != coordinator.ModeShared || l.Count != 1 || l.Permits != 0 {
			t.Fatalf("shared lease %+v", l)
		}
	}
	if l2.Token <= l1.Token {
		t.Fatalf("second shared holder's token %d <= %d", l2.Token, l1.Token)
	}
	_, err := c.Acquire(ctx, r, "w", coordinator.TTL(time.Hour))
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Holder != "r1" || ce.Token != l1.Token || ce.Mode != coordinator.ModeShared ||
		ce.Holders != 2 || ce.Upgrade || !ce.ExpiresAt.Equal(l1.ExpiresAt) {
		t.Fatalf("exclusive request on a shared resource: %v (%+v), want r1, shared, 2 holders", err, ce)
	}
	if !strings.Contains(err.Error(), "shared") || !strings.Contains(err.Error(), `"r1"`) {
		t.Fatalf("message %q does not say shared and r1", err)
	}
	ls := need2(t)(c.Holders(ctx, r))
	if !slices.Equal(owners(ls), []string{"r1", "r2"}) || ls[0].Token != l1.Token || ls[1].Token != l2.Token {
		t.Fatalf("Holders = %+v, want r1 then r2", ls)
	}
	if l := need(t)(c.Inspect(ctx, r)); l.Owner != "r1" || l.Mode != coordinator.ModeShared {
		t.Fatalf("Inspect of a shared resource = %+v, want r1, the first to expire", l)
	}
	// an exclusive holder refuses shared requests
	x := coordinator.Plan("ex")
	held := need(t)(c.Acquire(ctx, x, "w"))
	_, err = c.Acquire(ctx, x, "r1", shared)
	if !errors.As(err, &ce) || ce.Holder != "w" || ce.Mode != coordinator.ModeExclusive || ce.Holders != 1 || ce.Token != held.Token {
		t.Fatalf("shared request on an exclusive resource: %v, want w exclusive", err)
	}
	// the last shared holder's release frees the resource
	need(t)(c.Release(ctx, r, "r1"))
	if _, err := c.Acquire(ctx, r, "w"); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("exclusive request beside r2: %v", err)
	}
	need(t)(c.Release(ctx, r, "r2"))
	if l := need(t)(c.Acquire(ctx, r, "w")); l.Mode != coordinator.ModeExclusive || l.Token <= l2.Token {
		t.Fatalf("exclusive lease after the shared ones: %+v", l)
	}
}

// testSharedPermits: a capped resource takes at most its cap of owners;
// the cap is the first holder's and stays while any holder remains;
// another cap is ErrInvalid naming the recorded one.
func testSharedPermits(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("capped")
	need(t)(c.Acquire(ctx, r, "o1", coordinator.Permits(2)))
	l2 := need(t)(c.Acquire(ctx, r, "o2", coordinator.Permits(2)))
	if l2.Permits != 2 || l2.Mode != coordinator.ModeShared {
		t.Fatalf("capped lease %+v", l2)
	}
	_, err := c.Acquire(ctx, r, "o3", coordinator.Permits(2))
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Permits != 2 || ce.Holders != 2 || ce.Mode != coordinator.ModeShared {
		t.Fatalf("third owner under a cap of 2: %v, want a conflict naming the cap", err)
	}
	if _, err := c.Acquire(ctx, r, "o3", shared); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("shared without Permits under a full cap: %v, want a conflict", err)
	}
	_, err = c.Acquire(ctx, r, "o3", coordinator.Permits(3))
	var ve *coordinator.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, coordinator.ErrInvalid) || !strings.Contains(err.Error(), "2") {
		t.Fatalf("another cap: %v, want ErrInvalid naming the recorded cap 2", err)
	}
	// a holder re-entering keeps its permit, also asking with the cap
	if l := need(t)(c.Acquire(ctx, r, "o1", coordinator.Permits(2))); l.Count != 2 {
		t.Fatalf("re-entry under the cap: %+v", l)
	}
	need(t)(c.Release(ctx, r, "o2"))
	if l := need(t)(c.Acquire(ctx, r, "o3", shared)); l.Permits != 2 {
		t.Fatalf("shared request joining the cap: %+v", l)
	}
	if _, err := c.Acquire(ctx, r, "o4", shared); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("the cap held after a permit changed hands: %v", err)
	}
	// the cap goes with the last holder
	need(t)(c.Release(ctx, r, "o3"))
	need(t)(c.Release(ctx, r, "o1"))
	need(t)(c.Release(ctx, r, "o1"))
	free(t, ctx, c, "after every holder left", r)
	need(t)(c.Acquire(ctx, r, "o5", coordinator.Permits(3)))
	for _, o := range []string{"o6", "o7"} {
		need(t)(c.Acquire(ctx, r, o, shared))
	}
	if _, err := c.Acquire(ctx, r, "o8", shared); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("a fourth owner under a cap of 3: %v", err)
	}
	// no cap recorded: Permits is ErrInvalid, saying so
	u := coordinator.Plan("uncapped")
	need(t)(c.Acquire(ctx, u, "o1", shared))
	if _, err := c.Acquire(ctx, u, "o2", coordinator.Permits(4)); !errors.Is(err, coordinator.ErrInvalid) || !strings.Contains(err.Error(), "no cap") {
		t.Fatalf("Permits on an uncapped resource: %v, want ErrInvalid saying no cap", err)
	}
	// many owners without a cap
	for i := range 20 {
		need(t)(c.Acquire(ctx, u, "many"+strconv.Itoa(i), shared))
	}
	if ls := need2(t)(c.Holders(ctx, u)); len(ls) != 21 {
		t.Fatalf("%d holders, want 21", len(ls))
	}
}

// testSharedExpiry: each shared hold expires on its own, and a reader
// that died blocks a writer no longer than its own TTL.
func testSharedExpiry(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("sh-exp")
	need(t)(c.Acquire(ctx, r, "live", shared, coordinator.TTL(time.Hour)))
	dead := need(t)(c.Acquire(ctx, r, "dead", shared, coordinator.TTL(200*time.Millisecond)))
	testutil.Eventually(t, 10*time.Second, "the dead reader's hold to expire alone", func() bool {
		ls, err := c.Holders(ctx, r)
		return err == nil && slices.Equal(owners(ls), []string{"live"})
	})
	if _, err := c.Release(ctx, r, "dead"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("release of an expired shared hold: %v, want ErrNotHeld", err)
	}
	need(t)(c.Release(ctx, r, "live"))
	// a writer waits out a dead reader's TTL, no longer
	need(t)(c.Acquire(ctx, r, "dead2", shared, coordinator.TTL(300*time.Millisecond)))
	w := coordinator.New(s)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	l, err := w.Acquire(ctx, r, "writer", coordinator.Wait(20*time.Second))
	if err != nil {
		t.Fatalf("writer behind a dead reader: %v", err)
	}
	if l.Token <= dead.Token || l.Mode != coordinator.ModeExclusive {
		t.Fatalf("writer's lease %+v", l)
	}
}

// testSharedRenew: a renewal extends the renewer's hold only, and one
// naming another holder's token renews nothing.
func testSharedRenew(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("sh-renew")
	a := need(t)(c.Acquire(ctx, r, "a", shared, coordinator.TTL(5*time.Second)))
	b := need(t)(c.Acquire(ctx, r, "b", shared, coordinator.TTL(5*time.Second)))
	n := need(t)(c.Renew(ctx, r, "a", coordinator.TTL(time.Hour)))
	if n.Token != a.Token || n.Mode != coordinator.ModeShared || n.ExpiresAt.Sub(a.AcquiredAt) < time.Hour {
		t.Fatalf("renewed shared hold %+v", n)
	}
	ls := need2(t)(c.Holders(ctx, r))
	if !slices.Equal(owners(ls), []string{"b", "a"}) || !ls[0].ExpiresAt.Equal(b.ExpiresAt) {
		t.Fatalf("Holders after a's renewal = %+v: b's hold must be untouched", ls)
	}
	_, err := s.Renew(ctx, coordinator.Request{Resource: r, Owner: "b", TTL: time.Hour, RequestID: "sr-1", Token: a.Token})
	var le *coordinator.LeaseError
	if !errors.As(err, &le) || !errors.Is(err, coordinator.ErrNotHeld) || le.HolderToken != b.Token {
		t.Fatalf("b renewing with a's token: %v, want ErrNotHeld naming b's token", err)
	}
	if _, err := c.Renew(ctx, r, "c"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("renew by a non-holder: %v, want ErrNotHeld", err)
	}
}

// testSharedKeepAlive: keep-alives of two shared holders keep both holds
// alive well past their TTL, each renewing its own. (The TTL leaves a
// loaded machine room for a late renewal.)
func testSharedKeepAlive(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r := coordinator.Plan("sh-keep")
	const ttl = time.Second
	var first []coordinator.Lease
	for _, o := range []string{"k1", "k2"} {
		c := coordinator.New(s)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		l := need(t)(c.Acquire(ctx, r, o, shared, coordinator.TTL(ttl)))
		first = append(first, l)
		ka := c.KeepAlive(ctx, l)
		t.Cleanup(ka.Stop)
	}
	obs := coordinator.New(s)
	testutil.Eventually(t, 10*time.Second, "both holds renewed past two TTLs", func() bool {
		ls, err := obs.Holders(ctx, r)
		if err != nil || len(ls) != 2 {
			t.Fatalf("Holders = %+v, %v: a kept-alive shared hold was lost", ls, err)
		}
		for _, l := range ls {
			if l.ExpiresAt.Before(first[0].ExpiresAt.Add(2 * ttl)) {
				return false
			}
		}
		return true
	})
}

// testSharedReentry: re-entry is per owner, across modes: an exclusive
// holder asking shared re-enters and stays exclusive.
func testSharedReentry(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("sh-re")
	a := need(t)(c.Acquire(ctx, r, "a", shared))
	need(t)(c.Acquire(ctx, r, "b", shared))
	if l := need(t)(c.Acquire(ctx, r, "a", shared)); l.Count != 2 || l.Token != a.Token || l.Mode != coordinator.ModeShared {
		t.Fatalf("shared re-entry %+v", l)
	}
	if ls := need2(t)(c.Holders(ctx, r)); len(ls) != 2 {
		t.Fatalf("a re-entry added a holder: %+v", ls)
	}
	if l := need(t)(c.Release(ctx, r, "a")); l.Count != 1 {
		t.Fatalf("release of one shared hold: %+v", l)
	}
	x := coordinator.Plan("ex-re")
	e := need(t)(c.Acquire(ctx, x, "a"))
	l := need(t)(c.Acquire(ctx, x, "a", shared))
	if l.Count != 2 || l.Token != e.Token || l.Mode != coordinator.ModeExclusive {
		t.Fatalf("exclusive holder asking shared: %+v, want a re-entry that stays exclusive", l)
	}
	if _, err := c.Acquire(ctx, x, "b", shared); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("the lease became shared: %v", err)
	}
}

// testSharedUpgrade: the sole shared holder asking exclusive upgrades its
// lease with a new, greater token; beside other holders it gets an
// upgrade conflict at once, also with Wait.
func testSharedUpgrade(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("up")
	before := need(t)(c.Acquire(ctx, coordinator.Plan("other"), "z"))
	s := need(t)(c.Acquire(ctx, r, "a", shared))
	u := need(t)(c.Acquire(ctx, r, "a"))
	if u.Mode != coordinator.ModeExclusive || u.Count != 2 || u.Token <= s.Token || u.Token <= before.Token || !u.AcquiredAt.Equal(s.AcquiredAt) {
		t.Fatalf("upgrade of %+v = %+v, want exclusive, count 2, a greater token, acquired_at kept", s, u)
	}
	if _, err := c.Acquire(ctx, r, "b", shared); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("shared request after the upgrade: %v", err)
	}
	need(t)(c.Release(ctx, r, "a"))
	if l := heldBy(t, ctx, c, r, "a", 1); l.Mode != coordinator.ModeExclusive || l.Token != u.Token {
		t.Fatalf("after one release the upgraded lease is %+v", l)
	}
	need(t)(c.Release(ctx, r, "a"))

	need(t)(c.Acquire(ctx, r, "a", shared))
	b := need(t)(c.Acquire(ctx, r, "b", shared))
	_, err := c.Acquire(ctx, r, "a", coordinator.Wait(time.Minute))
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || !ce.Upgrade || ce.Holder != "b" || ce.Holders != 2 || ce.Token != b.Token {
		t.Fatalf("upgrade beside b: %v, want an upgrade conflict naming b at once", err)
	}
	if !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("message %q does not say upgrade", err)
	}
	if ls := need2(t)(c.Holders(ctx, r)); len(ls) != 2 || ls[0].Count != 1 || ls[1].Count != 1 {
		t.Fatalf("a refused upgrade changed the holds: %+v", ls)
	}
}

// testSharedUpgradeRace: two readers upgrading at once, both waiting,
// neither deadlocks: both get an upgrade conflict, and once one leaves the
// other upgrades.
func testSharedUpgradeRace(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r := coordinator.Plan("up-race")
	cs := []*coordinator.Coordinator{coordinator.New(s), coordinator.New(s)}
	for i, c := range cs {
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		need(t)(c.Acquire(ctx, r, "r"+strconv.Itoa(i), shared))
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			_, errs[i] = c.Acquire(ctx, r, "r"+strconv.Itoa(i), coordinator.Wait(time.Minute))
		})
	}
	wg.Wait()
	for i, err := range errs {
		var ce *coordinator.ConflictError
		if !errors.As(err, &ce) || !ce.Upgrade {
			t.Fatalf("reader %d upgrading: %v, want an upgrade conflict", i, err)
		}
	}
	need(t)(cs[1].Release(ctx, r, "r1"))
	if l := need(t)(cs[0].Acquire(ctx, r, "r0", coordinator.Wait(time.Minute))); l.Mode != coordinator.ModeExclusive {
		t.Fatalf("upgrade of the sole reader: %+v", l)
	}
}

// testSharedTokens: every hold in any mode, and every upgrade, gets a
// token above every token issued before for the resource.
func testSharedTokens(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("sh-tok")
	var last uint64
	next := func(l coordinator.Lease) {
		t.Helper()
		if l.Token <= last {
			t.Fatalf("token %d (%+v) after %d", l.Token, l, last)
		}
		last = l.Token
	}
	for round := range 5 {
		for i := range 3 {
			next(need(t)(c.Acquire(ctx, r, "s"+strconv.Itoa(i), shared)))
		}
		for i := range 3 {
			need(t)(c.Release(ctx, r, "s"+strconv.Itoa(i)))
		}
		next(need(t)(c.Acquire(ctx, r, "x")))
		need(t)(c.Release(ctx, r, "x"))
		next(need(t)(c.Acquire(ctx, r, "u", coordinator.Permits(2))))
		next(need(t)(c.Acquire(ctx, r, "u"))) // upgrade
		if round%2 == 0 {
			need(t)(c.Release(ctx, r, "u"))
			need(t)(c.Release(ctx, r, "u"))
		} else {
			h.Expire(t, s, r)
		}
	}
}

// testSharedRepeated: request IDs are applied once in shared mode too,
// and a shared AcquireAll as a whole.
func testSharedRepeated(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r, p := coordinator.Plan("sh-rep"), coordinator.Project("sh-rep")
	req := func(owner, id string) coordinator.Request {
		return coordinator.Request{Resource: r, Owner: owner, TTL: time.Minute, RequestID: id, Mode: coordinator.ModeShared, Permits: 3}
	}
	a := need(t)(s.Acquire(ctx, req("o1", "s1")))
	if l := need(t)(s.Acquire(ctx, req("o1", "s1"))); l.Count != 1 || l.Token != a.Token {
		t.Fatalf("repeated shared acquire: %+v", l)
	}
	need(t)(s.Acquire(ctx, req("o2", "s2")))
	need(t)(s.Acquire(ctx, req("o1", "s3")))
	if l := need(t)(s.Release(ctx, req("o1", "s4"))); l.Count != 1 {
		t.Fatalf("release: %+v", l)
	}
	if l := need(t)(s.Release(ctx, req("o1", "s4"))); l.Count != 1 {
		t.Fatalf("repeated shared release applied twice: %+v", l)
	}
	need(t)(s.Release(ctx, req("o1", "s5")))
	if l := need(t)(s.Release(ctx, req("o1", "s5"))); l.Count != 0 || l.Owner != "o1" {
		t.Fatalf("repeated final shared release: %+v", l)
	}
	if ls := need2(t)(s.Holders(ctx, r)); !slices.Equal(owners(ls), []string{"o2"}) {
		t.Fatalf("holders %+v, want o2", ls)
	}
	all := []coordinator.Request{
		{Resource: p, Owner: "o3", TTL: time.Minute, RequestID: "m1", Mode: coordinator.ModeShared},
		{Resource: r, Owner: "o3", TTL: time.Minute, RequestID: "m1", Mode: coordinator.ModeShared},
	}
	first := need2(t)(s.AcquireAll(ctx, all))
	again := need2(t)(s.AcquireAll(ctx, all))
	for i := range all {
		if again[i].Count != 1 || again[i].Token != first[i].Token || again[i].Permits != first[i].Permits {
			t.Fatalf("repeated shared AcquireAll: %+v after %+v", again[i], first[i])
		}
	}
	if first[1].Permits != 3 {
		t.Fatalf("AcquireAll joining a capped resource: %+v", first[1])
	}
}

// testSharedClose: Close and ReleaseAll release shared holds and permits,
// and leave other owners' holds of the same resources.
func testSharedClose(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	other := coordinator.New(s)
	a, b, x := coordinator.Plan("cl-a"), coordinator.Plan("cl-b"), coordinator.Plan("cl-x")
	need(t)(c.Acquire(ctx, a, "w1", shared))
	need(t)(c.Acquire(ctx, a, "w1", shared))
	need(t)(c.Acquire(ctx, b, "w1", coordinator.Permits(2)))
	need(t)(c.Acquire(ctx, x, "w1"))
	need(t)(other.Acquire(ctx, a, "w2", shared))
	need(t)(other.Acquire(ctx, b, "w2", shared))
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, r := range []coordinator.Resource{a, b} {
		if ls := need2(t)(other.Holders(ctx, r)); !slices.Equal(owners(ls), []string{"w2"}) {
			t.Fatalf("%s after Close: %+v, want w2 alone", r, ls)
		}
	}
	free(t, ctx, other, "after Close", x)
	// a freed permit is taken
	need(t)(other.Acquire(ctx, b, "w3", shared))

	need(t)(other.Acquire(ctx, a, "w3", shared))
	need(t)(other.Acquire(ctx, x, "w3", shared))
	if n, err := other.ReleaseAll(ctx, "w3"); err != nil || n != 3 {
		t.Fatalf("ReleaseAll = %d, %v; want 3", n, err)
	}
	for _, r := range []coordinator.Resource{a, b} {
		if ls := need2(t)(other.Holders(ctx, r)); !slices.Equal(owners(ls), []string{"w2"}) {
			t.Fatalf("%s after ReleaseAll: %+v, want w2 alone", r, ls)
		}
	}
	free(t, ctx, other, "after ReleaseAll", x)
}

// testSharedHierarchy: the project/plan recipe. A plan transition takes
// its project shared and its plan exclusive in one AcquireAll: transitions
// of two plans of a project run at once, two of one plan do not, and a
// project-wide operation (the project exclusive) excludes them all.
func testSharedHierarchy(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	p := coordinator.Project("apollo")
	transition := func(plan string) []coordinator.Claim {
		return []coordinator.Claim{{Resource: p, Mode: coordinator.ModeShared}, {Resource: coordinator.Plan(plan)}}
	}
	t1 := need2(t)(c.AcquireAll(ctx, "t1", transition("1")))
	need2(t)(c.AcquireAll(ctx, "t2", transition("2")))
	if t1[0].Mode != coordinator.ModeShared || t1[1].Mode != coordinator.ModeExclusive {
		t.Fatalf("transition leases %+v", t1)
	}
	if _, err := c.AcquireAll(ctx, "t3", transition("1")); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("a second transition of plan 1: %v", err)
	}
	var ce *coordinator.ConflictError
	if _, err := c.Acquire(ctx, p, "archiver"); !errors.As(err, &ce) || ce.Holders != 2 || ce.Mode != coordinator.ModeShared {
		t.Fatalf("archiving the project during transitions: %v", err)
	}
	if _, err := c.Holders(ctx, coordinator.Plan("3")); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("the refused transition left plan 3 held: %v", err)
	}
	for _, o := range []string{"t1", "t2"} {
		if _, err := c.ReleaseAll(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	need(t)(c.Acquire(ctx, p, "archiver"))
	if _, err := c.AcquireAll(ctx, "t4", transition("4")); !errors.As(err, &ce) || ce.Resource != p || ce.Holder != "archiver" {
		t.Fatalf("a transition while the project is archived: %v", err)
	}
	free(t, ctx, c, "after a refused transition", coordinator.Plan("4"))
	need(t)(c.Release(ctx, p, "archiver"))
	// at most two plans of the project run at once: a counted claim
	// beside the uncapped project
	running := coordinator.Resource{Type: "running", ID: "apollo"}
	capped := func(plan string) []coordinator.Claim {
		return append(transition(plan), coordinator.Claim{Resource: running, Mode: coordinator.ModeShared, Permits: 2})
	}
	for _, plan := range []string{"5", "6"} {
		ls := need2(t)(c.AcquireAll(ctx, "t"+plan, capped(plan)))
		if ls[0].Permits != 0 || ls[2].Permits != 2 {
			t.Fatalf("caps of a capped transition: project %d, running %d; want 0 and 2", ls[0].Permits, ls[2].Permits)
		}
	}
	if _, err := c.AcquireAll(ctx, "t7", capped("7")); !errors.As(err, &ce) || ce.Resource != running || ce.Permits != 2 {
		t.Fatalf("a third capped transition: %v, want the cap's conflict", err)
	}
	free(t, ctx, c, "after a transition refused by the cap", coordinator.Plan("7"))
}
