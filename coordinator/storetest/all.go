package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// allTests are the tests of AcquireAll, HoldAll and Holders on exclusive
// leases, and of the validation of modes, caps and claims: every store
// passes them.
var allTests = []conformanceTest{
	{"AcquireAllAllOrNothing", testAcquireAllAllOrNothing},
	{"AcquireAllReentry", testAcquireAllReentry},
	{"AcquireAllSpread", testAcquireAllSpread},
	{"AcquireAllRepeatedRequestID", testAcquireAllRepeated},
	{"AcquireAllNoDeadlock", testAcquireAllNoDeadlock},
	{"AcquireAllCancelledHoldsNothing", testAcquireAllCancelled},
	{"HoldAll", testHoldAll},
	{"HoldersExclusive", testHoldersExclusive},
	{"ModeValidation", testModeValidation},
}

// excl returns exclusive claims of rs.
func excl(rs ...coordinator.Resource) []coordinator.Claim {
	out := make([]coordinator.Claim, len(rs))
	for i, r := range rs {
		out[i] = coordinator.Claim{Resource: r}
	}
	return out
}

// free fails t unless every r is free.
func free(t *testing.T, ctx context.Context, c *coordinator.Coordinator, what string, rs ...coordinator.Resource) {
	t.Helper()
	for _, r := range rs {
		if l, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s: %s is held: %+v, %v", what, r, l, err)
		}
	}
}

// heldBy fails t unless r is held by owner with count holds, and returns
// the lease.
func heldBy(t *testing.T, ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource, owner string, count int) coordinator.Lease {
	t.Helper()
	l := need(t)(c.Inspect(ctx, r))
	if l.Owner != owner || l.Count != count {
		t.Fatalf("%s: %+v, want held by %s with count %d", r, l, owner, count)
	}
	return l
}

// testAcquireAllAllOrNothing: a busy claim refuses the whole set, naming
// that claim, and leaves nothing held; once it is free the set is taken,
// leases in the order of the claims.
func testAcquireAllAllOrNothing(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	a, b, d := coordinator.Plan("all-a"), coordinator.Project("all-b"), coordinator.Resource{Type: "job", ID: "all-d"}
	busy := need(t)(c.Acquire(ctx, b, "w2"))
	_, err := c.AcquireAll(ctx, "w1", excl(a, b, d))
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Resource != b || ce.Holder != "w2" || ce.Token != busy.Token {
		t.Fatalf("AcquireAll with %s busy: %v, want a *ConflictError naming it and w2", b, err)
	}
	free(t, ctx, c, "after a refused AcquireAll", a, d)
	heldBy(t, ctx, c, b, "w2", 1)
	if c.Held(a, "w1")+c.Held(d, "w1") != 0 {
		t.Fatal("the coordinator tracks holds of a refused AcquireAll")
	}
	need(t)(c.Release(ctx, b, "w2"))
	ls, err := c.AcquireAll(ctx, "w1", excl(d, a, b))
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[uint64]bool{}
	for i, r := range []coordinator.Resource{d, a, b} {
		l := ls[i]
		if l.Resource != r || l.Owner != "w1" || l.Count != 1 || l.Mode != coordinator.ModeExclusive || l.Token == 0 {
			t.Fatalf("lease %d = %+v, want w1's lease on %s", i, l, r)
		}
		if r == b && l.Token <= busy.Token {
			t.Fatalf("%s: token %d after %d", r, l.Token, busy.Token)
		}
		tokens[l.Token] = true
		if got := heldBy(t, ctx, c, r, "w1", 1); got.Token != l.Token {
			t.Fatalf("%s: inspected token %d, AcquireAll gave %d", r, got.Token, l.Token)
		}
		if c.Held(r, "w1") != 1 {
			t.Fatalf("%s: not tracked", r)
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("tokens %v: want one per lease", tokens)
	}
}

// testAcquireAllReentry: a claim on a lease of the owner re-enters it; a
// refused AcquireAll leaves that lease as it was.
func testAcquireAllReentry(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	a, b, d := coordinator.Plan("re-a"), coordinator.Plan("re-b"), coordinator.Plan("re-d")
	first := need(t)(c.Acquire(ctx, a, "w1", coordinator.TTL(2*time.Second)))
	need(t)(c.Acquire(ctx, b, "w2"))
	if _, err := c.AcquireAll(ctx, "w1", excl(a, b), coordinator.TTL(time.Hour)); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("AcquireAll with %s busy: %v", b, err)
	}
	if l := heldBy(t, ctx, c, a, "w1", 1); l.Token != first.Token || !l.ExpiresAt.Equal(first.ExpiresAt) {
		t.Fatalf("a refused AcquireAll changed %s: %+v, was %+v", a, l, first)
	}
	if ttl := h.RemainingTTL(t, s, a); ttl > 2*time.Second {
		t.Fatalf("a refused AcquireAll extended %s to %v", a, ttl)
	}
	ls := need2(t)(c.AcquireAll(ctx, "w1", excl(a, d), coordinator.TTL(time.Hour)))
	if ls[0].Count != 2 || ls[0].Token != first.Token || ls[1].Count != 1 {
		t.Fatalf("AcquireAll re-entering %s: %+v", a, ls)
	}
	if c.Held(a, "w1") != 2 {
		t.Fatalf("Held(%s) = %d, want 2", a, c.Held(a, "w1"))
	}
}

// need2(t)(call()) fails t when call returns an error and returns its
// leases.
func need2(t testing.TB) func([]coordinator.Lease, error) []coordinator.Lease {
	return func(ls []coordinator.Lease, err error) []coordinator.Lease {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return ls
	}
}

// testAcquireAllSpread: a set of 40 resources of several types (spread
// over a store's partitions) is taken and refused as a whole.
func testAcquireAllSpread(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	var rs []coordinator.Resource
	for i := range 40 {
		rs = append(rs, coordinator.Resource{Type: []string{"plan", "project", "job", "step"}[i%4], ID: "spread-" + strconv.Itoa(i)})
	}
	need(t)(c.Acquire(ctx, rs[23], "w2"))
	if _, err := c.AcquireAll(ctx, "w1", excl(rs...)); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("AcquireAll with %s busy: %v", rs[23], err)
	}
	for i, r := range rs {
		if i != 23 {
			free(t, ctx, c, "after a refused AcquireAll", r)
		}
	}
	need(t)(c.Release(ctx, rs[23], "w2"))
	ls := need2(t)(c.AcquireAll(ctx, "w1", excl(rs...)))
	for i, r := range rs {
		if ls[i].Resource != r || ls[i].Count != 1 {
			t.Fatalf("lease %d = %+v", i, ls[i])
		}
		heldBy(t, ctx, c, r, "w1", 1)
	}
	for _, r := range rs {
		need(t)(c.Release(ctx, r, "w1"))
	}
	free(t, ctx, c, "after the releases", rs...)
}

// testAcquireAllRepeated: a repeat of an AcquireAll's request ID is
// answered, not applied again, as a whole; a repeat of a refused one
// holds nothing.
func testAcquireAllRepeated(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	a, b := coordinator.Plan("rep-a"), coordinator.Project("rep-b")
	reqs := func(id string) []coordinator.Request {
		return []coordinator.Request{
			{Resource: a, Owner: "w1", TTL: time.Minute, RequestID: id},
			{Resource: b, Owner: "w1", TTL: time.Minute, RequestID: id},
		}
	}
	first := need2(t)(s.AcquireAll(ctx, reqs("all-1")))
	again := need2(t)(s.AcquireAll(ctx, reqs("all-1")))
	for i := range first {
		if again[i].Count != 1 || again[i].Token != first[i].Token {
			t.Fatalf("repeated AcquireAll: %+v after %+v, want the same leases, count 1", again[i], first[i])
		}
	}
	heldBy(t, ctx, c, a, "w1", 1)
	heldBy(t, ctx, c, b, "w1", 1)
	if ls := need2(t)(s.AcquireAll(ctx, reqs("all-2"))); ls[0].Count != 2 || ls[1].Count != 2 {
		t.Fatalf("a second AcquireAll: %+v, want re-entries", ls)
	}
	need(t)(c.Acquire(ctx, coordinator.Plan("rep-c"), "w2"))
	refused := []coordinator.Request{
		{Resource: coordinator.Plan("rep-d"), Owner: "w1", TTL: time.Minute, RequestID: "all-3"},
		{Resource: coordinator.Plan("rep-c"), Owner: "w1", TTL: time.Minute, RequestID: "all-3"},
	}
	for range 2 {
		if _, err := s.AcquireAll(ctx, refused); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("refused AcquireAll: %v", err)
		}
		free(t, ctx, c, "after a refused AcquireAll", coordinator.Plan("rep-d"))
	}
}

// testAcquireAllNoDeadlock: owners taking {a, b} and {b, a} with Wait,
// over and over at once, all finish.
func testAcquireAllNoDeadlock(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	a, b := coordinator.Plan("dl-a"), coordinator.Plan("dl-b")
	var wg sync.WaitGroup
	var inside sync.Mutex // held by whoever holds both
	for i, claims := range [][]coordinator.Claim{excl(a, b), excl(b, a), excl(a, b), excl(b, a)} {
		c := coordinator.New(s)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		wg.Go(func() {
			owner := "w" + strconv.Itoa(i)
			for range 10 {
				err := c.HoldAll(ctx, owner, claims, func(context.Context, []coordinator.Lease) error {
					if !inside.TryLock() {
						return errors.New("two owners hold both resources at once")
					}
					inside.Unlock()
					return nil
				}, coordinator.Wait(time.Minute))
				if err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// testAcquireAllCancelled: an AcquireAll whose wait is cut short by its
// context leaves no claim held.
func testAcquireAllCancelled(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	a, b := coordinator.Plan("cx-a"), coordinator.Plan("cx-b")
	need(t)(c.Acquire(ctx, b, "w2"))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := c.AcquireAll(wctx, "w1", excl(a, b), coordinator.Wait(time.Minute))
	if !errors.Is(err, coordinator.ErrConflict) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled AcquireAll: %v, want ErrConflict and the context's error", err)
	}
	free(t, ctx, c, "after a cancelled AcquireAll", a)
	heldBy(t, ctx, c, b, "w2", 1)
}

// testHoldAll: HoldAll holds every claim while fn runs, hands fn the
// leases, releases them all after, and returns fn's error.
func testHoldAll(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	a, b := coordinator.Plan("ha-a"), coordinator.Project("ha-b")
	boom := errors.New("boom")
	err := c.HoldAll(ctx, "w1", excl(a, b), func(ctx context.Context, ls []coordinator.Lease) error {
		if len(ls) != 2 || ls[0].Resource != a || ls[1].Resource != b {
			return fmt.Errorf("leases %+v", ls)
		}
		for _, l := range ls {
			if got := heldBy(t, ctx, c, l.Resource, "w1", 1); got.Token != l.Token {
				return fmt.Errorf("%s: token %d, fn got %d", l.Resource, got.Token, l.Token)
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("HoldAll = %v, want fn's error", err)
	}
	free(t, ctx, c, "after HoldAll", a, b)
}

// testHoldersExclusive: Holders of an exclusive lease lists it alone; of a
// free resource, ErrNotHeld.
func testHoldersExclusive(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("holders")
	if _, err := c.Holders(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Holders of a free resource: %v, want ErrNotHeld", err)
	}
	l := need(t)(c.Acquire(ctx, r, "w1"))
	need(t)(c.Acquire(ctx, r, "w1"))
	ls := need2(t)(c.Holders(ctx, r))
	if len(ls) != 1 || ls[0].Owner != "w1" || ls[0].Count != 2 || ls[0].Token != l.Token || ls[0].Mode != coordinator.ModeExclusive {
		t.Fatalf("Holders = %+v", ls)
	}
	if _, err := c.Holders(ctx, coordinator.Resource{Type: "Bad", ID: "1"}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Holders of an invalid resource: %v", err)
	}
}

// testModeValidation: bad modes, caps, metadata and claims are ErrInvalid
// naming the field, before any I/O.
func testModeValidation(t *testing.T, h Harness) {
	ctx := t.Context()
	cs := &countingStore{Store: h.NewStore(t)}
	c := coordinator.New(cs)
	r := coordinator.Plan("1")
	check := func(what, field string, err error) {
		t.Helper()
		var ve *coordinator.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, coordinator.ErrInvalid) || ve.Field != field {
			t.Errorf("%s: %v, want ErrInvalid naming %q", what, err, field)
		}
	}
	for name, opt := range map[string]coordinator.AcquireOption{
		"Permits(0)":         coordinator.Permits(0),
		"Permits(-1)":        coordinator.Permits(-1),
		"Meta too long":      coordinator.Meta(strings.Repeat("m", coordinator.MaxMetaLen+1)),
		"Meta with newline":  coordinator.Meta("a\nb"),
		"Meta not UTF-8":     coordinator.Meta("a\xffb"),
		"Meta with NUL":      coordinator.Meta("a\x00"),
		"Meta with DEL":      coordinator.Meta("a\x7f"),
		"Meta with a bidi":   coordinator.Meta("a\u202eb"),
		"Meta with a CR":     coordinator.Meta("a\rb"),
		"Meta with a escape": coordinator.Meta("\x1b[31m"),
	} {
		field := "Permits"
		if strings.HasPrefix(name, "Meta") {
			field = "Meta"
		}
		_, err := c.Acquire(ctx, r, "w", opt)
		check("Acquire with "+name, field, err)
		_, err = c.AcquireAll(ctx, "w", excl(r), opt)
		check("AcquireAll with "+name, field, err)
	}
	many := make([]coordinator.Resource, coordinator.MaxClaims+1)
	for i := range many {
		many[i] = coordinator.Plan(strconv.Itoa(i))
	}
	for name, tc := range map[string]struct {
		owner  string
		claims []coordinator.Claim
		opts   []coordinator.AcquireOption
		field  string
	}{
		"no claims":           {"w", nil, nil, "claims"},
		"too many claims":     {"w", excl(many...), nil, "claims"},
		"a duplicate":         {"w", excl(r, coordinator.Plan("2"), r), nil, "claims"},
		"an invalid resource": {"w", excl(coordinator.Resource{Type: "Plan", ID: "1"}), nil, "resource type"},
		"an invalid mode":     {"w", []coordinator.Claim{{Resource: r, Mode: coordinator.Mode(7)}}, nil, "claim mode"},
		"a negative cap":      {"w", []coordinator.Claim{{Resource: r, Mode: coordinator.ModeShared, Permits: -1}}, nil, "claim Permits"},
		"a cap, exclusive":    {"w", []coordinator.Claim{{Resource: r, Permits: 2}}, nil, "claim Permits"},
		"an invalid owner":    {"", excl(r), nil, "owner"},
		"Shared":              {"w", excl(r), []coordinator.AcquireOption{coordinator.Shared()}, "Shared"},
		"Permits, no shared":  {"w", excl(r), []coordinator.AcquireOption{coordinator.Permits(2)}, "Permits"},
		"a zero TTL":          {"w", excl(r), []coordinator.AcquireOption{coordinator.TTL(0)}, "TTL"},
	} {
		_, err := c.AcquireAll(ctx, tc.owner, tc.claims, tc.opts...)
		check("AcquireAll with "+name, tc.field, err)
		err = c.HoldAll(ctx, tc.owner, tc.claims, func(context.Context, []coordinator.Lease) error { return nil }, tc.opts...)
		check("HoldAll with "+name, tc.field, err)
	}
	check("HoldAll without fn", "fn", c.HoldAll(ctx, "w", excl(r), nil))
	if n := cs.calls.Load(); n != 0 {
		t.Fatalf("invalid input reached the store %d times", n)
	}
	if got := coordinator.Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
	// the rules' limits are valid
	for _, meta := range []string{"", "host-1 pid 42\tphase: review", strings.Repeat("é", coordinator.MaxMetaLen/2)} {
		if err := coordinator.ValidateMeta(meta); err != nil {
			t.Errorf("ValidateMeta(%q): %v", meta, err)
		}
	}
}
