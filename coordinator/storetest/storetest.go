// Package storetest is the conformance suite every coordinator.Store must
// pass, in the manner of golang-migrate's driver tests: a backend's test
// calls Run with a Harness that creates isolated stores and can make the
// backend forget, expire and lose things on demand.
//
// A store that offers the optional capabilities coordinator.Notifier and
// coordinator.WaitQueue also runs their suites, RunNotifier and
// RunWaitQueue, with the same Harness (as goose's optional StoreExtender
// or golang-migrate's optional driver parts have tests of their own).
// Parts of the contract a store may not support yet are Capabilities its
// Harness declares (Capable): Run tests the declared ones and checks
// that the store refuses the others; RunFairQueue tests FairQueue.
//
// MemStore is an in-memory Store with every capability, the reference
// the suites are checked against (MemHarness), and a store for tests
// and examples that need no Redis.
package storetest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Harness gives the suite fresh stores and control over the backend.
type Harness interface {
	// NewStore returns a store in a namespace of its own, empty.
	NewStore(t testing.TB) coordinator.Store
	// Expire makes the lease on r expire now, as if its TTL had run out
	// (miniredis: FastForward; Redis: PEXPIRE 1 and wait for it to go).
	Expire(t testing.TB, s coordinator.Store, r coordinator.Resource)
	// RemainingTTL returns the backend's remaining TTL of the lease on r
	// (PTTL), or a negative duration when there is none.
	RemainingTTL(t testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration
	// LoseData wipes everything the store wrote, as a restart without
	// persistence or a FLUSHALL would.
	LoseData(t testing.TB, s coordinator.Store)
	// SetFence sets the last fencing token issued in r's partition.
	SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64)
	// DropScripts empties the backend's script cache (SCRIPT FLUSH).
	DropScripts(t testing.TB, s coordinator.Store)
}

// Capability is a part of the Store contract that a store may not
// support yet. A Harness declares the capabilities of its stores by
// implementing Capable. Run runs the tests of each capability declared,
// and for each one not declared checks that the store refuses its
// requests with coordinator.ErrUnsupported, applying nothing: a store
// never half-supports a capability silently, and a store that declares
// one it does not meet fails its tests.
type Capability string

const (
	// Shared is ModeShared and Permits: several holders of a resource,
	// caps, re-entry across modes, upgrades, Holders of several owners,
	// AcquireAll of mixed modes.
	Shared Capability = "shared"
	// FairQueue is a WaitQueue that grants a fresh hold of a resource
	// with queued waiters only to the first of them, keeps the first
	// queued until it acquires, and tells the next one when there is
	// room: waiting acquirers get a resource in the order they queued,
	// and a waiting exclusive request is not overtaken by shared ones.
	// RunFairQueue is its suite.
	FairQueue Capability = "fair-queue"
)

// Capable is implemented by a Harness whose stores have capabilities.
type Capable interface {
	Capabilities() []Capability
}

// has reports whether h declares c.
func has(h Harness, c Capability) bool {
	if ch, ok := h.(Capable); ok {
		for _, x := range ch.Capabilities() {
			if x == c {
				return true
			}
		}
	}
	return false
}

// Run runs every conformance test against stores from h: the tests of
// the base contract, of AcquireAll and Holders, and of each Capability h
// declares (the refusal of the others).
func Run(t *testing.T, h Harness) {
	tests := []conformanceTest{
		{"AcquireFree", testAcquireFree},
		{"Reentrant", testReentrant},
		{"Conflict", testConflict},
		{"Renew", testRenew},
		{"Release", testRelease},
		{"Expiry", testExpiry},
		{"TokensIncrease", testTokensIncrease},
		{"TokensSurviveDataLoss", testTokensSurviveDataLoss},
		{"TokenAbove2To50", testTokenExact},
		{"TokenAbove2To53", testTokenAbove2To53},
		{"StoreValidates", testStoreValidates},
		{"ReleaseMemoPerResource", testReleaseMemoPerResource},
		{"RepeatedRequestIDs", testRepeatedRequestIDs},
		{"ReleaseAll", testReleaseAll},
		{"Concurrency", testConcurrency},
		{"Validation", testValidation},
		{"ScriptCacheLoss", testScriptCacheLoss},
		{"Close", testClose},
		{"RenewByToken", testRenewByToken},
		{"SameOwnerAfterExpiry", testSameOwnerAfterExpiry},
		{"ConflictLeavesHolder", testConflictLeavesHolder},
		{"MetaAndRemaining", testMetaAndRemaining},
	}
	tests = append(tests, allTests...)
	if has(h, Shared) {
		tests = append(tests, sharedTests...)
	} else {
		tests = append(tests, conformanceTest{"SharedUnsupported", testSharedUnsupported})
	}
	runTests(t, h, tests)
}

// conformanceTest is one test of a suite.
type conformanceTest struct {
	name string
	fn   func(t *testing.T, h Harness)
}

func runTests(t *testing.T, h Harness, tests []conformanceTest) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func setup(t *testing.T, h Harness, opts ...coordinator.Option) (context.Context, coordinator.Store, *coordinator.Coordinator) {
	s := h.NewStore(t)
	return t.Context(), s, coordinator.New(s, opts...)
}

// sameLease compares the exported fields of two leases.
func sameLease(a, b coordinator.Lease) bool {
	return a.Resource == b.Resource && a.Owner == b.Owner && a.Token == b.Token && a.Count == b.Count &&
		a.AcquiredAt.Equal(b.AcquiredAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

// need(t)(call()) fails t when call returns an error and returns its lease.
func need(t testing.TB) func(coordinator.Lease, error) coordinator.Lease {
	return func(l coordinator.Lease, err error) coordinator.Lease {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return l
	}
}

func testAcquireFree(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("42")
	l := need(t)(c.Acquire(ctx, r, "w1"))
	if l.Resource != r || l.Owner != "w1" || l.Count != 1 || l.Token == 0 {
		t.Fatalf("lease = %+v", l)
	}
	if got := l.ExpiresAt.Sub(l.AcquiredAt); got != coordinator.DefaultPlanTTL {
		t.Fatalf("expires - acquired = %v, want the plan default %v", got, coordinator.DefaultPlanTTL)
	}
	if d := time.Since(l.AcquiredAt); d < -time.Minute || d > time.Minute {
		t.Fatalf("acquired_at %v is not near now (Redis time)", l.AcquiredAt)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl <= coordinator.DefaultPlanTTL-5*time.Second || ttl > coordinator.DefaultPlanTTL {
		t.Fatalf("PTTL = %v, want about %v", ttl, coordinator.DefaultPlanTTL)
	}
	got := need(t)(c.Inspect(ctx, r))
	if !sameLease(got, l) {
		t.Fatalf("Inspect = %+v, want %+v", got, l)
	}
	// defaults of the other types, and the per-call option
	for _, tc := range []struct {
		r    coordinator.Resource
		opts []coordinator.AcquireOption
		want time.Duration
	}{
		{coordinator.Project("7"), nil, coordinator.DefaultProjectTTL},
		{coordinator.Resource{Type: "job", ID: "x"}, nil, coordinator.DefaultTTL},
		{coordinator.Plan("43"), []coordinator.AcquireOption{coordinator.TTL(1500 * time.Millisecond)}, 1500 * time.Millisecond},
	} {
		l := need(t)(c.Acquire(ctx, tc.r, "w1", tc.opts...))
		if got := l.ExpiresAt.Sub(l.AcquiredAt); got != tc.want {
			t.Errorf("%s: ttl %v, want %v", tc.r, got, tc.want)
		}
	}
	c2 := coordinator.New(s, coordinator.WithTTL("job", 2*time.Second), coordinator.WithDefaultTTL(3*time.Second))
	for r, want := range map[coordinator.Resource]time.Duration{
		{Type: "job", ID: "y"}: 2 * time.Second, {Type: "other", ID: "y"}: 3 * time.Second, coordinator.Plan("44"): coordinator.DefaultPlanTTL,
	} {
		l := need(t)(c2.Acquire(ctx, r, "w2"))
		if got := l.ExpiresAt.Sub(l.AcquiredAt); got != want {
			t.Errorf("%s: ttl %v, want %v", r, got, want)
		}
	}
}

func testReentrant(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("1")
	first := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(10*time.Second)))
	second := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(20*time.Second)))
	if second.Count != 2 || second.Token != first.Token || !second.AcquiredAt.Equal(first.AcquiredAt) {
		t.Fatalf("re-entry = %+v after %+v: want count 2, same token and acquired_at", second, first)
	}
	if second.ExpiresAt.Before(first.AcquiredAt.Add(20 * time.Second)) {
		t.Fatalf("re-entry did not refresh the TTL: expires %v", second.ExpiresAt)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl <= 15*time.Second {
		t.Fatalf("PTTL after re-entry = %v, want about 20s", ttl)
	}
	// a shorter TTL on re-entry never shortens the lease
	third := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Second)))
	if third.Count != 3 || third.ExpiresAt.Before(second.ExpiresAt) {
		t.Fatalf("re-entry with a shorter TTL = %+v, want count 3, expiry >= %v", third, second.ExpiresAt)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl <= 15*time.Second {
		t.Fatalf("PTTL after a shorter re-entry = %v, want about 20s", ttl)
	}
}

func testConflict(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Project("p")
	held := need(t)(c.Acquire(ctx, r, "w1"))
	need(t)(c.Acquire(ctx, r, "w1"))
	_, err := c.Acquire(ctx, r, "w2")
	if !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err %T is not a *ConflictError", err)
	}
	if ce.Resource != r || ce.Holder != "w1" || ce.Token != held.Token || ce.Count != 2 || ce.ExpiresAt.Before(held.ExpiresAt) {
		t.Fatalf("conflict = %+v, want holder w1, token %d, count 2", ce, held.Token)
	}
	if !strings.Contains(err.Error(), `"w1"`) {
		t.Fatalf("message %q does not name the holder", err)
	}
	got := need(t)(c.Inspect(ctx, r))
	if got.Owner != "w1" || got.Count != 2 {
		t.Fatalf("conflict changed the lease: %+v", got)
	}
}

func testRenew(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("r")
	l := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(2*time.Second)))
	need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(2*time.Second)))
	n := need(t)(c.Renew(ctx, r, "w1", coordinator.TTL(time.Minute)))
	if n.Count != 2 || n.Token != l.Token || n.ExpiresAt.Before(l.AcquiredAt.Add(time.Minute)) {
		t.Fatalf("renewed = %+v", n)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl <= 50*time.Second {
		t.Fatalf("PTTL after renew = %v, want about 1m", ttl)
	}
	// Renew without the option uses the type's default
	n = need(t)(c.Renew(ctx, r, "w1"))
	if got := n.ExpiresAt.Sub(n.AcquiredAt); got < coordinator.DefaultPlanTTL {
		t.Fatalf("renew with the default ttl: expires-acquired = %v", got)
	}
	_, err := c.Renew(ctx, r, "w2")
	var le *coordinator.LeaseError
	if !errors.Is(err, coordinator.ErrNotHeld) || !errors.As(err, &le) || le.Holder != "w1" {
		t.Fatalf("renew of another's lease: %v, want ErrNotHeld naming w1", err)
	}
	_, err = c.Renew(ctx, coordinator.Plan("free"), "w1")
	if !errors.Is(err, coordinator.ErrExpired) {
		t.Fatalf("renew of a free resource: %v, want ErrExpired", err)
	}
}

func testRelease(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("rel")
	need(t)(c.Acquire(ctx, r, "w1"))
	need(t)(c.Acquire(ctx, r, "w1"))
	if _, err := c.Release(ctx, r, "w2"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("release by another: %v, want ErrNotHeld", err)
	}
	l := need(t)(c.Release(ctx, r, "w1"))
	if l.Count != 1 {
		t.Fatalf("after one release count = %d, want 1", l.Count)
	}
	if got := need(t)(c.Inspect(ctx, r)); got.Count != 1 || got.Owner != "w1" {
		t.Fatalf("inspect = %+v", got)
	}
	l = need(t)(c.Release(ctx, r, "w1"))
	if l.Count != 0 || l.Owner != "w1" {
		t.Fatalf("final release = %+v, want count 0", l)
	}
	if _, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("inspect after release: %v, want ErrNotHeld", err)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl >= 0 {
		t.Fatalf("key still has PTTL %v after the final release", ttl)
	}
	if _, err := c.Release(ctx, r, "w1"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("release of a free resource: %v, want ErrNotHeld", err)
	}
	// a freed resource is free for anyone
	need(t)(c.Acquire(ctx, r, "w2"))
}

func testExpiry(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("exp")
	old := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Second)))
	h.Expire(t, s, r)
	if _, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("inspect after expiry: %v, want ErrNotHeld", err)
	}
	if _, err := c.Renew(ctx, r, "w1"); !errors.Is(err, coordinator.ErrExpired) {
		t.Fatalf("renew after expiry: %v, want ErrExpired", err)
	}
	l := need(t)(c.Acquire(ctx, r, "w2"))
	if l.Token <= old.Token || l.Count != 1 {
		t.Fatalf("new lease %+v after expiry of token %d", l, old.Token)
	}
	if _, err := c.Release(ctx, r, "w1"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("release by the expired holder: %v, want ErrNotHeld", err)
	}
}

func testTokensIncrease(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("tok")
	var last uint64
	for i := range 50 {
		l := need(t)(c.Acquire(ctx, r, "w"+strconv.Itoa(i%3)))
		if l.Token <= last {
			t.Fatalf("token %d after %d", l.Token, last)
		}
		last = l.Token
		if i%2 == 0 {
			need(t)(c.Release(ctx, r, l.Owner))
		} else {
			h.Expire(t, s, r)
		}
	}
}

func testTokensSurviveDataLoss(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("loss")
	var last uint64
	for range 3 {
		for range 20 {
			l := need(t)(c.Acquire(ctx, r, "w1"))
			need(t)(c.Release(ctx, r, "w1"))
			last = l.Token
		}
		h.LoseData(t, s)
		l := need(t)(c.Acquire(ctx, r, "w1"))
		if l.Token <= last {
			t.Fatalf("token %d after data loss, issued %d before", l.Token, last)
		}
		last = l.Token
		need(t)(c.Release(ctx, r, "w1"))
	}
}

func testTokenExact(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("big")
	const base = uint64(1)<<52 + 12345 // above Redis TIME in µs until the year 2112
	h.SetFence(t, s, r, base)
	l := need(t)(c.Acquire(ctx, r, "w1"))
	if l.Token != base+1 {
		t.Fatalf("token = %d, want %d (every digit)", l.Token, base+1)
	}
	if got := need(t)(c.Inspect(ctx, r)); got.Token != base+1 {
		t.Fatalf("inspected token = %d, want %d", got.Token, base+1)
	}
	_, err := c.Acquire(ctx, r, "w2")
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Token != base+1 {
		t.Fatalf("conflict %v: want token %d", err, base+1)
	}
	need(t)(c.Release(ctx, r, "w1"))
	if l := need(t)(c.Acquire(ctx, r, "w2")); l.Token != base+2 {
		t.Fatalf("next token = %d, want %d", l.Token, base+2)
	}
}

func testRepeatedRequestIDs(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r := coordinator.Plan("retry")
	req := func(id string) coordinator.Request {
		return coordinator.Request{Resource: r, Owner: "w1", TTL: time.Minute, RequestID: id}
	}
	a := need(t)(s.Acquire(ctx, req("a1")))
	b := need(t)(s.Acquire(ctx, req("a1")))
	if a.Count != 1 || b.Count != 1 || b.Token != a.Token {
		t.Fatalf("repeated acquire: %+v then %+v, want count 1 both", a, b)
	}
	need(t)(s.Acquire(ctx, req("a2")))
	if l := need(t)(s.Acquire(ctx, req("a2"))); l.Count != 2 {
		t.Fatalf("repeated re-entry: count %d, want 2", l.Count)
	}
	if l := need(t)(s.Renew(ctx, req("n1"))); l.Count != 2 {
		t.Fatalf("renew: count %d", l.Count)
	}
	if l := need(t)(s.Renew(ctx, req("n1"))); l.Count != 2 {
		t.Fatalf("repeated renew: count %d", l.Count)
	}
	if l := need(t)(s.Release(ctx, req("r1"))); l.Count != 1 {
		t.Fatalf("release: count %d, want 1", l.Count)
	}
	if l := need(t)(s.Release(ctx, req("r1"))); l.Count != 1 {
		t.Fatalf("repeated release: count %d, want 1 (applied twice)", l.Count)
	}
	if l := need(t)(s.Release(ctx, req("r2"))); l.Count != 0 {
		t.Fatalf("final release: count %d, want 0", l.Count)
	}
	if l := need(t)(s.Release(ctx, req("r2"))); l.Count != 0 || l.Owner != "w1" || l.Token != a.Token {
		t.Fatalf("repeated final release = %+v, want the first reply", l)
	}
	// the owner takes the resource again; a late repeat of the old
	// release must not release the new lease
	n := need(t)(s.Acquire(ctx, req("a3")))
	if l := need(t)(s.Release(ctx, req("r2"))); l.Token != a.Token {
		t.Fatalf("late repeat answered %+v", l)
	}
	if l := need(t)(s.Inspect(ctx, r)); l.Count != 1 || l.Token != n.Token {
		t.Fatalf("a late repeated release changed the new lease: %+v", l)
	}
	// ten more distinct requests push the first ones out of the lease's
	// memory, but a repeat of any recent one is still recognised
	for i := range 10 {
		need(t)(s.Renew(ctx, req("x"+strconv.Itoa(i))))
	}
	if l := need(t)(s.Renew(ctx, req("x9"))); l.Count != 1 {
		t.Fatalf("repeat after many: %+v", l)
	}
}

func testReleaseAll(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	other := coordinator.New(s)
	var mine []coordinator.Resource
	for i := range 5 {
		r := coordinator.Resource{Type: "job", ID: "j" + strconv.Itoa(i)}
		mine = append(mine, r)
		need(t)(c.Acquire(ctx, r, "w1"))
	}
	need(t)(other.Acquire(ctx, mine[0], "w1")) // count 2, through another coordinator
	need(t)(c.Acquire(ctx, mine[0], "w1"))     // count 3
	need(t)(c.Acquire(ctx, coordinator.Plan("theirs"), "w2"))
	// an expired lease of w1, and a lease w1 lost to w2, must not count
	gone := coordinator.Plan("gone")
	need(t)(c.Acquire(ctx, gone, "w1", coordinator.TTL(time.Second)))
	h.Expire(t, s, gone)
	taken := coordinator.Plan("taken")
	need(t)(c.Acquire(ctx, taken, "w1", coordinator.TTL(time.Second)))
	h.Expire(t, s, taken)
	need(t)(c.Acquire(ctx, taken, "w2"))

	n, err := c.ReleaseAll(ctx, "w1")
	if err != nil || n != 5 {
		t.Fatalf("ReleaseAll = %d, %v; want 5", n, err)
	}
	for _, r := range mine {
		if _, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s still held after ReleaseAll: %v", r, err)
		}
	}
	for _, r := range []coordinator.Resource{coordinator.Plan("theirs"), taken} {
		if l := need(t)(c.Inspect(ctx, r)); l.Owner != "w2" {
			t.Fatalf("ReleaseAll touched %s of w2: %+v", r, l)
		}
	}
	if n, err := c.ReleaseAll(ctx, "w1"); err != nil || n != 0 {
		t.Fatalf("second ReleaseAll = %d, %v; want 0", n, err)
	}
	if c.Held(mine[0], "w1") != 0 {
		t.Fatalf("coordinator still tracks a released hold")
	}
}

func testConcurrency(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	r := coordinator.Plan("hot")
	const n = 100
	var (
		wg      sync.WaitGroup
		winners atomic.Int32
		winner  atomic.Value
		errs    = make([]error, n)
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			l, err := c.Acquire(ctx, r, "w"+strconv.Itoa(i))
			errs[i] = err
			if err == nil {
				winners.Add(1)
				winner.Store(l.Owner)
			}
		})
	}
	close(start)
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d winners, want exactly 1", winners.Load())
	}
	w := winner.Load().(string)
	for i, err := range errs {
		if err == nil {
			continue
		}
		var ce *coordinator.ConflictError
		if !errors.As(err, &ce) || ce.Holder != w {
			t.Fatalf("goroutine %d: %v, want a conflict naming %s", i, err, w)
		}
	}
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	coordinator.Store
	calls atomic.Int32
}

func (s *countingStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.Acquire(ctx, req)
}

func (s *countingStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.Renew(ctx, req)
}

func (s *countingStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.Release(ctx, req)
}

func (s *countingStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.Inspect(ctx, r)
}

func (s *countingStore) ReleaseAll(ctx context.Context, owner, id string) (int, error) {
	s.calls.Add(1)
	return s.Store.ReleaseAll(ctx, owner, id)
}

func (s *countingStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.AcquireAll(ctx, reqs)
}

func (s *countingStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	s.calls.Add(1)
	return s.Store.Holders(ctx, r)
}

// invalidCall is a call with one bad argument, and the field its
// *ValidationError must name.
type invalidCall struct {
	name  string
	r     coordinator.Resource
	owner string
	opts  []coordinator.AcquireOption
	field string
}

// invalidCalls breaks each rule of resource types, ids, owners and TTLs
// once.
func invalidCalls() []invalidCall {
	long := strings.Repeat("x", coordinator.MaxNameLen+1)
	return []invalidCall{
		{"empty type", coordinator.Resource{ID: "1"}, "w", nil, "resource type"},
		{"upper-case type", coordinator.Resource{Type: "Plan", ID: "1"}, "w", nil, "resource type"},
		{"type with a colon", coordinator.Resource{Type: "pl:an", ID: "1"}, "w", nil, "resource type"},
		{"type starting with a digit", coordinator.Resource{Type: "1plan", ID: "1"}, "w", nil, "resource type"},
		{"type too long", coordinator.Resource{Type: strings.Repeat("a", 65), ID: "1"}, "w", nil, "resource type"},
		{"empty id", coordinator.Plan(""), "w", nil, "resource id"},
		{"id too long", coordinator.Plan(long), "w", nil, "resource id"},
		{"id with a newline", coordinator.Plan("a\nb"), "w", nil, "resource id"},
		{"id not UTF-8", coordinator.Plan("a\xffb"), "w", nil, "resource id"},
		{"empty owner", coordinator.Plan("1"), "", nil, "owner"},
		{"owner with NUL", coordinator.Plan("1"), "w\x00", nil, "owner"},
		{"owner too long", coordinator.Plan("1"), long, nil, "owner"},
		{"zero ttl", coordinator.Plan("1"), "w", []coordinator.AcquireOption{coordinator.TTL(0)}, "TTL"},
		{"negative ttl", coordinator.Plan("1"), "w", []coordinator.AcquireOption{coordinator.TTL(-time.Second)}, "TTL"},
		{"sub-millisecond ttl", coordinator.Plan("1"), "w", []coordinator.AcquireOption{coordinator.TTL(time.Microsecond)}, "TTL"},
	}
}

func testValidation(t *testing.T, h Harness) {
	ctx := t.Context()
	cs := &countingStore{Store: h.NewStore(t)}
	c := coordinator.New(cs)
	for _, tc := range invalidCalls() {
		for op, call := range map[string]func() error{
			"acquire": func() error { _, err := c.Acquire(ctx, tc.r, tc.owner, tc.opts...); return err },
			"renew":   func() error { _, err := c.Renew(ctx, tc.r, tc.owner, tc.opts...); return err },
		} {
			err := call()
			var ve *coordinator.ValidationError
			if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field || ve.Rule == "" {
				t.Errorf("%s %s: %v, want ErrInvalid naming %q", op, tc.name, err, tc.field)
			}
		}
		if tc.opts == nil {
			if _, err := c.Release(ctx, tc.r, tc.owner); !errors.Is(err, coordinator.ErrInvalid) {
				t.Errorf("release %s: %v, want ErrInvalid", tc.name, err)
			}
		}
	}
	if _, err := c.Inspect(ctx, coordinator.Resource{Type: "", ID: "1"}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("inspect: %v", err)
	}
	if _, err := c.ReleaseAll(ctx, ""); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("release all: %v", err)
	}
	for name, opt := range map[string]coordinator.Option{
		"WithTTL(plan)":  coordinator.WithTTL("plan", 0),
		"WithTTL":        coordinator.WithTTL("Bad", time.Second),
		"WithDefaultTTL": coordinator.WithDefaultTTL(-1),
	} {
		bad := coordinator.New(cs, opt)
		if _, err := bad.Acquire(ctx, coordinator.Plan("1"), "w"); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("option %s: %v, want ErrInvalid", name, err)
		}
	}
	if n := cs.calls.Load(); n != 0 {
		t.Fatalf("invalid input reached the store %d times", n)
	}
}

func testScriptCacheLoss(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("cache")
	need(t)(c.Acquire(ctx, r, "w1"))
	h.DropScripts(t, s)
	if l := need(t)(c.Acquire(ctx, r, "w1")); l.Count != 2 {
		t.Fatalf("count %d after script cache loss", l.Count)
	}
	h.DropScripts(t, s)
	need(t)(c.Renew(ctx, r, "w1"))
	h.DropScripts(t, s)
	need(t)(c.Release(ctx, r, "w1"))
}

func testClose(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	observer := coordinator.New(s)
	a, b := coordinator.Plan("c1"), coordinator.Project("c2")
	need(t)(c.Acquire(ctx, a, "w1"))
	need(t)(c.Acquire(ctx, a, "w1"))
	need(t)(c.Acquire(ctx, b, "w2"))
	need(t)(observer.Acquire(ctx, coordinator.Plan("kept"), "w1"))
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, r := range []coordinator.Resource{a, b} {
		if _, err := observer.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s still held after Close: %v", r, err)
		}
	}
	if _, err := observer.Inspect(ctx, coordinator.Plan("kept")); err != nil {
		t.Fatalf("Close released a lease of another coordinator: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Acquire(ctx, a, "w1"); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("acquire after Close: %v, want ErrClosed", err)
	}
}

// testRenewByToken: a Renew naming a token renews only that lease; the
// owner's later lease is left alone and reported with its token, so that
// a keep-alive of a lost lease never extends its successor.
func testRenewByToken(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r := coordinator.Plan("bytoken")
	req := func(id string, ttl time.Duration, token uint64) coordinator.Request {
		return coordinator.Request{Resource: r, Owner: "w1", TTL: ttl, RequestID: id, Token: token}
	}
	old := need(t)(s.Acquire(ctx, req("a1", time.Minute, 0)))
	need(t)(s.Release(ctx, req("r1", 0, 0)))
	cur := need(t)(s.Acquire(ctx, req("a2", 2*time.Second, 0)))
	if cur.Token == old.Token {
		t.Fatalf("a new acquisition kept token %d", old.Token)
	}
	_, err := s.Renew(ctx, req("n1", time.Hour, old.Token))
	var le *coordinator.LeaseError
	if !errors.Is(err, coordinator.ErrNotHeld) || !errors.As(err, &le) || le.HolderToken != cur.Token || le.Holder != "w1" {
		t.Fatalf("renew of token %d while %d is held: %v, want ErrNotHeld naming token %d", old.Token, cur.Token, err, cur.Token)
	}
	if ttl := h.RemainingTTL(t, s, r); ttl > 2*time.Second {
		t.Fatalf("a renew of the old token extended the new lease to %v", ttl)
	}
	if l := need(t)(s.Renew(ctx, req("n2", time.Hour, cur.Token))); l.Token != cur.Token || l.ExpiresAt.Sub(cur.AcquiredAt) < time.Hour {
		t.Fatalf("renew of the current token = %+v", l)
	}
	if l := need(t)(s.Renew(ctx, req("n3", time.Minute, 0))); l.Token != cur.Token {
		t.Fatalf("renew without a token = %+v", l)
	}
}

// testSameOwnerAfterExpiry: an owner whose lease expired takes a new
// lease, not a re-entry of the old one.
func testSameOwnerAfterExpiry(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("again")
	old := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Second)))
	need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Second)))
	h.Expire(t, s, r)
	l := need(t)(c.Acquire(ctx, r, "w1"))
	if l.Count != 1 || l.Token <= old.Token {
		t.Fatalf("acquire after expiry = %+v, want count 1 and a token above %d", l, old.Token)
	}
}

// testConflictLeavesHolder: a refused acquisition changes nothing of the
// holder's lease, its TTL included.
func testConflictLeavesHolder(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("kept")
	held := need(t)(c.Acquire(ctx, r, "w1", coordinator.TTL(2*time.Second)))
	for i := range 3 {
		if _, err := c.Acquire(ctx, r, "w"+strconv.Itoa(i+2), coordinator.TTL(time.Hour)); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("acquire by another: %v", err)
		}
	}
	if ttl := h.RemainingTTL(t, s, r); ttl > 2*time.Second {
		t.Fatalf("a refused acquisition extended the holder's lease to %v", ttl)
	}
	if l := need(t)(c.Inspect(ctx, r)); !sameLease(l, held) {
		t.Fatalf("lease after conflicts = %+v, want %+v", l, held)
	}
}

// testTokenAbove2To53: tokens above 2^53, beyond the integers a double
// holds, are still exact and each above the last (issue 12.4: a fence of
// 2^53 + 1 gave three acquisitions the same token 2^53, below it).
func testTokenAbove2To53(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("huge")
	const base = uint64(1)<<53 + 1
	h.SetFence(t, s, r, base)
	for i := range uint64(3) {
		l := need(t)(c.Acquire(ctx, r, "w"+strconv.FormatUint(i, 10)))
		if l.Token != base+1+i {
			t.Fatalf("acquisition %d: token %d, want %d", i, l.Token, base+1+i)
		}
		if got := need(t)(c.Inspect(ctx, r)); got.Token != l.Token {
			t.Fatalf("inspected token %d, want %d", got.Token, l.Token)
		}
		need(t)(c.Release(ctx, r, l.Owner))
	}
}

// testStoreValidates: the store itself refuses what the coordinator
// refuses (issue 12.5: a store is a public type, and what it let through
// ended in Redis keys and in events the audit mirror could not store),
// with a *ValidationError naming the field.
func testStoreValidates(t *testing.T, h Harness) {
	ctx := t.Context()
	s := h.NewStore(t)
	good := coordinator.Request{Resource: coordinator.Plan("1"), Owner: "w", TTL: time.Minute, RequestID: "v-1"}
	for _, tc := range []struct {
		name  string
		bad   func(*coordinator.Request)
		field string
		ttl   bool // a rule of Acquire and Renew only
	}{
		{"owner not UTF-8", func(q *coordinator.Request) { q.Owner = "w\xff" }, "owner", false},
		{"owner with NUL", func(q *coordinator.Request) { q.Owner = "w\x00" }, "owner", false},
		{"empty owner", func(q *coordinator.Request) { q.Owner = "" }, "owner", false},
		{"id with NUL", func(q *coordinator.Request) { q.Resource.ID = "4\x002" }, "resource id", false},
		{"empty id", func(q *coordinator.Request) { q.Resource.ID = "" }, "resource id", false},
		{"type Bad:Type", func(q *coordinator.Request) { q.Resource.Type = "Bad:Type" }, "resource type", false},
		{"empty type", func(q *coordinator.Request) { q.Resource.Type = "" }, "resource type", false},
		{"request id with a space", func(q *coordinator.Request) { q.RequestID = "r 1" }, "request id", false},
		{"empty request id", func(q *coordinator.Request) { q.RequestID = "" }, "request id", false},
		{"request id too long", func(q *coordinator.Request) { q.RequestID = strings.Repeat("r", 129) }, "request id", false},
		{"zero ttl", func(q *coordinator.Request) { q.TTL = 0 }, "TTL", true},
		{"sub-millisecond ttl", func(q *coordinator.Request) { q.TTL = time.Microsecond }, "TTL", true},
	} {
		req := good
		tc.bad(&req)
		calls := map[string]func() error{
			"Acquire": func() error { _, err := s.Acquire(ctx, req); return err },
			"Renew":   func() error { _, err := s.Renew(ctx, req); return err },
		}
		if !tc.ttl {
			calls["Release"] = func() error { _, err := s.Release(ctx, req); return err }
		}
		for op, call := range calls {
			err := call()
			var ve *coordinator.ValidationError
			if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field || ve.Rule == "" {
				t.Errorf("%s with %s: %v, want ErrInvalid naming %q", op, tc.name, err, tc.field)
			}
		}
	}
	for name, call := range map[string]func() error{
		"Inspect":                       func() error { _, err := s.Inspect(ctx, coordinator.Resource{Type: "Bad:Type", ID: "1"}); return err },
		"ReleaseAll of an empty owner":  func() error { _, err := s.ReleaseAll(ctx, "", "v-2"); return err },
		"ReleaseAll with a bad request": func() error { _, err := s.ReleaseAll(ctx, "w", "v 2"); return err },
	} {
		if err := call(); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Inspect(ctx, good.Resource); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("an invalid call took the resource: %v", err)
	}
}

// testReleaseMemoPerResource: a release's memory of its request id
// answers only a retry of that release of that resource (issue 12.6: a
// request id reused within the retry window for another resource of the
// partition made its release return the first one's reply, count 0 and
// the old token, and release nothing).
func testReleaseMemoPerResource(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	// 40 resources: with up to 16 partitions (and any partitioning), many
	// share one
	var rs []coordinator.Resource
	var tokens []uint64
	for i := range 40 {
		r := coordinator.Resource{Type: "job", ID: "memo-" + strconv.Itoa(i)}
		l := need(t)(s.Acquire(ctx, coordinator.Request{Resource: r, Owner: "w1", TTL: time.Minute, RequestID: "acq-" + strconv.Itoa(i)}))
		rs, tokens = append(rs, r), append(tokens, l.Token)
	}
	for i, r := range rs {
		l := need(t)(s.Release(ctx, coordinator.Request{Resource: r, Owner: "w1", RequestID: "same-id"}))
		if l.Resource != r || l.Token != tokens[i] || l.Count != 0 {
			t.Fatalf("release of %s with a request id used before for another resource = %+v, want its own lease (token %d) released", r, l, tokens[i])
		}
		if _, err := s.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s still held after its release: %v", r, err)
		}
	}
	// a retry of each release is still answered with its own first reply
	for i, r := range rs {
		if l := need(t)(s.Release(ctx, coordinator.Request{Resource: r, Owner: "w1", RequestID: "same-id"})); l.Token != tokens[i] || l.Count != 0 {
			t.Fatalf("retried release of %s = %+v, want token %d", r, l, tokens[i])
		}
	}
}
