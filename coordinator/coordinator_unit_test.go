package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

func ok[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// allCalls runs every call of c on r and owner and returns their errors.
func allCalls(ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource, owner string) map[string]error {
	out := map[string]error{}
	_, out["Acquire"] = c.Acquire(ctx, r, owner)
	_, out["Renew"] = c.Renew(ctx, r, owner)
	_, out["Release"] = c.Release(ctx, r, owner)
	_, out["Inspect"] = c.Inspect(ctx, r)
	_, out["ReleaseAll"] = c.ReleaseAll(ctx, owner)
	return out
}

func TestCoordinatorNilStore(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(nil)
	if c.StoreForTest() != nil {
		t.Fatalf("Store() = %v", c.StoreForTest())
	}
	for call, err := range allCalls(ctx, c, coordinator.Plan("1"), "w1") {
		var ve *coordinator.ValidationError
		if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "store" || !strings.Contains(err.Error(), "store") {
			t.Errorf("%s on a nil store: %v, want ErrInvalid naming the store", call, err)
		}
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close of a coordinator on a nil store: %v", err)
	}
}

func TestCoordinatorStoreErrorsPropagate(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	r := coordinator.Plan("1")
	boom := errors.New("boom: connection reset")
	failing := ""
	s.setFail(func(op string, _ coordinator.Request) error {
		if op == failing {
			return fmt.Errorf("fake %s: %w", op, boom)
		}
		return nil
	})

	failing = "acquire"
	if _, err := c.Acquire(ctx, r, "w1"); !errors.Is(err, boom) {
		t.Fatalf("Acquire: %v, want the store's error", err)
	}
	if n := c.Held(r, "w1"); n != 0 {
		t.Fatalf("a failed Acquire is tracked: Held = %d", n)
	}
	failing = ""
	ok[coordinator.Lease](t)(c.Acquire(ctx, r, "w1"))
	// a store failure says nothing about the lease: the hold stays tracked
	for call, f := range map[string]func() error{
		"renew":      func() error { _, err := c.Renew(ctx, r, "w1"); return err },
		"release":    func() error { _, err := c.Release(ctx, r, "w1"); return err },
		"inspect":    func() error { _, err := c.Inspect(ctx, r); return err },
		"releaseall": func() error { _, err := c.ReleaseAll(ctx, "w1"); return err },
	} {
		failing = call
		if err := f(); !errors.Is(err, boom) {
			t.Errorf("%s: %v, want the store's error", call, err)
		}
		if n := c.Held(r, "w1"); n != 1 {
			t.Errorf("after a failed %s: Held = %d, want 1", call, n)
		}
	}
	failing = ""
	if _, err := c.Acquire(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	failing = "release"
	err := c.Close(ctx)
	if !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want the failed release", err)
	}
}

func TestCoordinatorHeldTracking(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	a, b := coordinator.Plan("a"), coordinator.Project("b")
	held := func(r coordinator.Resource, owner string, want int, step string) {
		t.Helper()
		if got := c.Held(r, owner); got != want {
			t.Fatalf("%s: Held(%s, %s) = %d, want %d", step, r, owner, got, want)
		}
	}
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	ok[coordinator.Lease](t)(c.Acquire(ctx, b, "w1"))
	ok[coordinator.Lease](t)(c.Acquire(ctx, b, "w1"))
	held(a, "w1", 2, "two acquisitions")
	held(a, "w2", 0, "another owner")
	if _, err := c.Acquire(ctx, a, "w2"); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	held(a, "w2", 0, "a conflict")
	if l := ok[coordinator.Lease](t)(c.Release(ctx, a, "w1")); l.Count != 1 || !l.Held() {
		t.Fatalf("release = %+v, want one hold left", l)
	}
	held(a, "w1", 1, "one release")
	ok[coordinator.Lease](t)(c.Renew(ctx, a, "w1"))
	held(a, "w1", 1, "renew")
	if l := ok[coordinator.Lease](t)(c.Release(ctx, a, "w1")); l.Count != 0 || l.Held() {
		t.Fatalf("last release = %+v, want no holds", l)
	}
	held(a, "w1", 0, "last release")

	// the store says the lease is gone: the coordinator forgets it
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	s.mu.Lock()
	delete(s.leases, a) // expired
	s.mu.Unlock()
	if _, err := c.Renew(ctx, a, "w1"); !errors.Is(err, coordinator.ErrExpired) {
		t.Fatalf("renew of an expired lease: %v", err)
	}
	held(a, "w1", 0, "renew found it expired")

	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	s.mu.Lock()
	s.leases[a] = coordinator.Lease{Resource: a, Owner: "w9", Count: 1, Token: 99}
	s.mu.Unlock()
	if _, err := c.Renew(ctx, a, "w1"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("renew of a lease taken over: %v", err)
	}
	held(a, "w1", 0, "renew found it taken over")

	s.mu.Lock()
	delete(s.leases, a)
	s.mu.Unlock()
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w1"))
	s.mu.Lock()
	delete(s.leases, a)
	s.mu.Unlock()
	if _, err := c.Release(ctx, a, "w1"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("release of a lost lease: %v", err)
	}
	held(a, "w1", 0, "release found it gone")

	// holds taken through another coordinator are not this one's: after
	// releasing its own hold, c tracks none though the lease lives on
	other := coordinator.New(s)
	d := coordinator.Plan("d")
	ok[coordinator.Lease](t)(c.Acquire(ctx, d, "w1"))
	ok[coordinator.Lease](t)(other.Acquire(ctx, d, "w1"))
	held(d, "w1", 1, "another coordinator's hold")
	if l := ok[coordinator.Lease](t)(c.Release(ctx, d, "w1")); l.Count != 1 {
		t.Fatalf("release = %+v, want one hold left in the store", l)
	}
	held(d, "w1", 0, "own hold released")
	if other.Held(d, "w1") != 1 {
		t.Fatalf("the other coordinator lost track of its hold")
	}
	ok[coordinator.Lease](t)(other.Release(ctx, d, "w1"))

	// ReleaseAll forgets that owner's holds only
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "w2"))
	if n := ok[int](t)(c.ReleaseAll(ctx, "w1")); n != 1 {
		t.Fatalf("ReleaseAll = %d, want 1 (b)", n)
	}
	held(b, "w1", 0, "ReleaseAll")
	held(a, "w2", 1, "ReleaseAll of another owner")
}

func TestCoordinatorCloseJoinsErrors(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	rs := []coordinator.Resource{coordinator.Plan("ok"), coordinator.Plan("gone"), coordinator.Plan("taken"), coordinator.Plan("e1"), coordinator.Plan("e2")}
	for _, r := range rs {
		ok[coordinator.Lease](t)(c.Acquire(ctx, r, "w1"))
	}
	ok[coordinator.Lease](t)(c.Acquire(ctx, rs[0], "w1"))
	s.mu.Lock()
	delete(s.leases, rs[1])
	s.leases[rs[2]] = coordinator.Lease{Resource: rs[2], Owner: "w2", Count: 1}
	s.mu.Unlock()
	e1, e2 := errors.New("e1 failed"), errors.New("e2 failed")
	s.setFail(func(op string, req coordinator.Request) error {
		switch {
		case op != "release":
		case req.Resource == rs[3]:
			return e1
		case req.Resource == rs[4]:
			return e2
		}
		return nil
	})
	before := len(s.callsOf("release"))
	err := c.Close(ctx)
	if !errors.Is(err, e1) || !errors.Is(err, e2) {
		t.Fatalf("Close = %v, want both release errors", err)
	}
	if errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Close = %v: a lease already gone or taken over is not an error", err)
	}
	rels := s.callsOf("release")[before:]
	if len(rels) != len(rs) {
		t.Fatalf("Close sent %d releases, want one per resource (%d)", len(rels), len(rs))
	}
	ids := map[string]bool{}
	for _, req := range rels {
		if !req.All || req.Owner != "w1" || req.RequestID == "" || ids[req.RequestID] {
			t.Fatalf("Close release %+v: want All, owner w1, a fresh request id", req)
		}
		ids[req.RequestID] = true
	}
	s.mu.Lock()
	_, still := s.leases[rs[0]]
	s.mu.Unlock()
	if still {
		t.Fatal("Close left the lease with two holds")
	}
	for _, r := range rs {
		if n := c.Held(r, "w1"); n != 0 {
			t.Fatalf("Held(%s) = %d after Close", r, n)
		}
	}

	n := len(s.callsOf(""))
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for call, err := range allCalls(ctx, c, coordinator.Plan("new"), "w1") {
		if !errors.Is(err, coordinator.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", call, err)
		}
	}
	if m := len(s.callsOf("")); m != n {
		t.Fatalf("calls after Close reached the store (%d)", m-n)
	}
	// validation still comes first
	if _, err := c.Acquire(ctx, coordinator.Plan(""), "w1"); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("invalid call after Close: %v", err)
	}
}

// TestCoordinatorCloseWaitsForCalls: a lease whose Acquire was in flight
// when Close began is released by Close, not leaked.
func TestCoordinatorCloseWaitsForCalls(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	entered, proceed := make(chan struct{}), make(chan struct{})
	r := coordinator.Plan("slow")
	s.before = func(op string, req coordinator.Request) {
		if op == "acquire" && req.Resource == r {
			close(entered)
			<-proceed
		}
	}
	c := coordinator.New(s)
	var wg sync.WaitGroup
	var acqErr, closeErr error
	wg.Go(func() { _, acqErr = c.Acquire(ctx, r, "w1") })
	<-entered
	closed := make(chan struct{})
	wg.Go(func() { closeErr = c.Close(ctx); close(closed) })
	// Close has begun once new calls are refused
	testutil.Eventually(t, 10*time.Second, "Close to refuse new calls", func() bool {
		_, err := c.Inspect(ctx, coordinator.Plan("x"))
		return errors.Is(err, coordinator.ErrClosed)
	})
	select {
	case <-closed:
		t.Fatal("Close returned while an Acquire was in flight")
	default:
	}
	close(proceed)
	wg.Wait()
	if acqErr != nil || closeErr != nil {
		t.Fatalf("Acquire: %v, Close: %v", acqErr, closeErr)
	}
	s.mu.Lock()
	_, leaked := s.leases[r]
	s.mu.Unlock()
	if leaked {
		t.Fatal("the lease acquired while Close waited was not released")
	}
}

func TestCoordinatorRequests(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s, nil, coordinator.WithTTL("job", 7*time.Second), coordinator.WithTTL("plan", time.Minute),
		coordinator.WithDefaultTTL(9*time.Second))
	for r, want := range map[coordinator.Resource]time.Duration{
		coordinator.Plan("1"): time.Minute, coordinator.Project("1"): coordinator.DefaultProjectTTL,
		{Type: "job", ID: "1"}: 7 * time.Second, {Type: "other", ID: "1"}: 9 * time.Second,
	} {
		if got := c.TTLForTest(r.Type); got != want {
			t.Errorf("TTLFor(%s) = %v, want %v", r.Type, got, want)
		}
		ok[coordinator.Lease](t)(c.Acquire(ctx, r, "w1"))
		ok[coordinator.Lease](t)(c.Renew(ctx, r, "w1", nil))
		for _, req := range s.callsOf("")[len(s.callsOf(""))-2:] {
			if req.TTL != want || req.Resource != r || req.Owner != "w1" || req.All {
				t.Errorf("request %+v, want TTL %v for %s", req, want, r)
			}
		}
		ok[coordinator.Lease](t)(c.Acquire(ctx, r, "w1", coordinator.TTL(1500*time.Millisecond)))
		if req := s.callsOf("acquire")[len(s.callsOf("acquire"))-1]; req.TTL != 1500*time.Millisecond {
			t.Errorf("TTL option: request TTL %v", req.TTL)
		}
		ok[coordinator.Lease](t)(c.Release(ctx, r, "w1"))
		if req := s.callsOf("release")[len(s.callsOf("release"))-1]; req.All {
			t.Errorf("Release asked to drop every hold: %+v", req)
		}
	}
	defaults := coordinator.New(s)
	for typ, want := range map[string]time.Duration{"plan": coordinator.DefaultPlanTTL, "project": coordinator.DefaultProjectTTL, "job": coordinator.DefaultTTL} {
		if got := defaults.TTLForTest(typ); got != want {
			t.Errorf("default TTLFor(%s) = %v, want %v", typ, got, want)
		}
		if got := coordinator.DefaultTTLFor(typ); got != want {
			t.Errorf("DefaultTTLFor(%s) = %v, want %v", typ, got, want)
		}
	}
	ok[int](t)(c.ReleaseAll(ctx, "w1"))
	ok[int](t)(defaults.ReleaseAll(ctx, "w1"))

	// request ids: unique, one prefix per coordinator
	prefixOf := func(id string) string { return id[:strings.LastIndexByte(id, '-')+1] }
	seen := map[string]bool{}
	prefixes := map[string]bool{}
	for _, req := range s.callsOf("") {
		if req.RequestID == "" {
			continue // Inspect
		}
		if seen[req.RequestID] {
			t.Fatalf("request id %q used twice", req.RequestID)
		}
		seen[req.RequestID] = true
		prefixes[prefixOf(req.RequestID)] = true
	}
	if len(prefixes) != 2 {
		t.Fatalf("request id prefixes %v, want one per coordinator", prefixes)
	}
	for p := range prefixes {
		if len(p) < 9 || strings.ContainsAny(p, " \t\n") {
			t.Fatalf("request id prefix %q: want random hex, no spaces (the scripts split on spaces)", p)
		}
	}
}

func TestCoordinatorOptionValidation(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		opts  []coordinator.Option
		field string
	}{
		{"zero WithTTL", []coordinator.Option{coordinator.WithTTL("plan", 0)}, "WithTTL(plan)"},
		{"negative WithTTL", []coordinator.Option{coordinator.WithTTL("job", -time.Second)}, "WithTTL(job)"},
		{"sub-ms WithTTL", []coordinator.Option{coordinator.WithTTL("job", time.Microsecond)}, "WithTTL(job)"},
		{"WithTTL of a bad type", []coordinator.Option{coordinator.WithTTL("Job", time.Second)}, "resource type"},
		{"zero WithDefaultTTL", []coordinator.Option{coordinator.WithDefaultTTL(0)}, "WithDefaultTTL"},
		{"negative WithRenewInterval", []coordinator.Option{coordinator.WithRenewInterval(-1)}, "WithRenewInterval"},
		{"negative WithSafetyMargin", []coordinator.Option{coordinator.WithSafetyMargin(-1)}, "WithSafetyMargin"},
		{"first bad option wins", []coordinator.Option{coordinator.WithDefaultTTL(-1), coordinator.WithTTL("plan", 0)}, "WithDefaultTTL"},
		{"bad after good", []coordinator.Option{coordinator.WithTTL("plan", time.Second), nil, coordinator.WithTTL("x", 0)}, "WithTTL(x)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeStore()
			c := coordinator.New(s, tc.opts...)
			for call, err := range allCalls(ctx, c, coordinator.Plan("1"), "w1") {
				var ve *coordinator.ValidationError
				if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field {
					t.Errorf("%s: %v, want ErrInvalid naming %s", call, err, tc.field)
				} else if !strings.Contains(err.Error(), tc.field) || ve.Rule == "" {
					t.Errorf("%s: message %q does not name %s and its rule", call, err, tc.field)
				}
			}
			if n := len(s.callsOf("")); n != 0 {
				t.Fatalf("a misconfigured coordinator called the store %d times", n)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	// per-call options
	s := newFakeStore()
	c := coordinator.New(s)
	for _, tc := range []struct {
		opt   coordinator.AcquireOption
		field string
		rule  string
	}{
		{coordinator.TTL(0), "TTL", "from 1ms to 8760h0m0s"},
		{coordinator.TTL(-time.Minute), "TTL", "from 1ms"},
		{coordinator.TTL(999 * time.Microsecond), "TTL", "from 1ms"},
		{coordinator.TTL(coordinator.MaxTTL + time.Millisecond), "TTL", "to 8760h0m0s (one year)"},
		{coordinator.TTL(2562047 * time.Hour), "TTL", "to 8760h0m0s"},
		{coordinator.Wait(-time.Second), "Wait", "negative"},
	} {
		for op, call := range map[string]func() error{
			"Acquire": func() error { _, err := c.Acquire(ctx, coordinator.Plan("1"), "w1", tc.opt); return err },
			"Renew":   func() error { _, err := c.Renew(ctx, coordinator.Plan("1"), "w1", tc.opt); return err },
		} {
			err := call()
			var ve *coordinator.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Rule, tc.rule) {
				t.Errorf("%s with %s option: %v, want a ValidationError naming %s (%s)", op, tc.field, err, tc.field, tc.rule)
			}
		}
	}
	if n := len(s.callsOf("")); n != 0 {
		t.Fatalf("invalid call options reached the store %d times", n)
	}
	ok[coordinator.Lease](t)(c.Acquire(ctx, coordinator.Plan("1"), "w1", coordinator.TTL(time.Millisecond)))
	ok[coordinator.Lease](t)(c.Acquire(ctx, coordinator.Plan("2"), "w1", coordinator.TTL(coordinator.MaxTTL)))
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorValidatesBeforeTheStore(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	for _, tc := range []struct {
		r     coordinator.Resource
		owner string
		field string
	}{
		{coordinator.Resource{Type: "", ID: "1"}, "w1", "resource type"},
		{coordinator.Plan(""), "w1", "resource id"},
		{coordinator.Plan(strings.Repeat("é", 257)), "w1", "resource id"},
		{coordinator.Plan("1"), "", "owner"},
		{coordinator.Plan("1"), "w\x001", "owner"},
	} {
		for call, err := range allCalls(ctx, c, tc.r, tc.owner) {
			want := tc.field
			if call == "Inspect" && want == "owner" || call == "ReleaseAll" && want != "owner" {
				if err != nil && !errors.Is(err, coordinator.ErrNotHeld) {
					t.Errorf("%s does not take the %s: %v", call, tc.field, err)
				}
				continue
			}
			var ve *coordinator.ValidationError
			if !errors.As(err, &ve) || ve.Field != want {
				t.Errorf("%s(%q, %q): %v, want ErrInvalid naming %s", call, tc.r, tc.owner, err, want)
			}
		}
	}
	for _, req := range s.callsOf("") {
		if req.Resource.Validate() == nil && req.Owner != "" && coordinator.ValidateOwner(req.Owner) != nil {
			t.Fatalf("an invalid owner reached the store: %+v", req)
		}
		if req.Resource != (coordinator.Resource{}) && req.Resource.Validate() != nil {
			t.Fatalf("an invalid resource reached the store: %+v", req)
		}
	}
}

// TestCoordinatorConcurrentTracking runs many goroutines through one
// coordinator (for the race detector) and checks the holds add up.
func TestCoordinatorConcurrentTracking(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			r := coordinator.Resource{Type: "job", ID: fmt.Sprint(i % 8)}
			owner := fmt.Sprint("w", i%8)
			for range 20 {
				if _, err := c.Acquire(ctx, r, owner); err != nil {
					t.Error(err)
					return
				}
			}
			for range 20 {
				if _, err := c.Release(ctx, r, owner); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		if n := c.Held(coordinator.Resource{Type: "job", ID: fmt.Sprint(i)}, fmt.Sprint("w", i)); n != 0 {
			t.Fatalf("Held = %d after equal acquisitions and releases", n)
		}
	}
	if len(s.leases) != 0 {
		t.Fatalf("leases left: %v", s.leases)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink safe for the coordinator's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCoordinatorCallFindsLoss: when Renew or Release learns from the
// store that a kept-alive lease is gone, the keep-alive ends with
// ErrLeaseLost at once, and the loss is logged.
func TestCoordinatorCallFindsLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		call   func(ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource) error
		change func(s *fakeStore, r coordinator.Resource)
		reason error
	}{
		{"renew of an expired lease",
			func(ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource) error {
				_, err := c.Renew(ctx, r, "w1")
				return err
			},
			func(s *fakeStore, r coordinator.Resource) { delete(s.leases, r) }, coordinator.ErrExpired},
		{"release of a lease taken over",
			func(ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource) error {
				_, err := c.Release(ctx, r, "w1")
				return err
			},
			func(s *fakeStore, r coordinator.Resource) {
				s.leases[r] = coordinator.Lease{Resource: r, Owner: "w2", Count: 1, Token: 1 << 40}
			}, coordinator.ErrNotHeld},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := newFakeStore()
			var log syncBuffer
			c := coordinator.New(s, coordinator.WithLogger(zerolog.New(&log)))
			r := coordinator.Plan("kept")
			l := ok[coordinator.Lease](t)(c.Acquire(ctx, r, "w1", coordinator.TTL(time.Hour)))
			ka := c.KeepAlive(ctx, l)
			defer ka.Stop()
			s.mu.Lock()
			tc.change(s, r)
			s.mu.Unlock()
			if err := tc.call(ctx, c, r); !errors.Is(err, tc.reason) {
				t.Fatalf("call: %v, want %v", err, tc.reason)
			}
			select {
			case <-ka.Done():
			case <-time.After(waitBound):
				t.Fatal("the keep-alive did not learn of the loss")
			}
			if err := ka.Err(); !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, tc.reason) {
				t.Fatalf("keep-alive Err = %v, want ErrLeaseLost because of %v", err, tc.reason)
			}
			if n := c.Held(r, "w1"); n != 0 {
				t.Fatalf("Held = %d after the loss", n)
			}
			if !strings.Contains(log.String(), "lease lost") || !strings.Contains(log.String(), "plan/kept") {
				t.Fatalf("the loss was not logged: %s", log.String())
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), "coordinator closed") {
				t.Fatalf("Close was not logged: %s", log.String())
			}
		})
	}
}

// TestCoordinatorAcceptsValidOptions: options with valid values do not
// make calls fail.
func TestCoordinatorAcceptsValidOptions(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s, coordinator.WithRenewInterval(time.Second), coordinator.WithSafetyMargin(time.Second),
		coordinator.WithRenewInterval(0), coordinator.WithSafetyMargin(0), coordinator.WithMetrics(nil),
		coordinator.WithLogger(zerolog.Nop()), coordinator.WithTTL("a", time.Millisecond), coordinator.WithDefaultTTL(time.Millisecond))
	r := coordinator.Resource{Type: "a", ID: "1"}
	for call, err := range allCalls(ctx, c, r, "w1") {
		// allCalls inspects after its release: the resource is free
		if err != nil && !(call == "Inspect" && errors.Is(err, coordinator.ErrNotHeld)) {
			t.Errorf("%s: %v", call, err)
		}
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
