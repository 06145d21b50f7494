package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// notifyOnly is a MemStore seen as a store with release notifications
// but no waiter queue: the coordinator's hub alone orders its waiters.
type notifyOnly struct {
	coordinator.Store
	coordinator.Notifier
}

type result struct {
	l   coordinator.Lease
	err error
}

// acquireAsync runs Acquire in a goroutine and returns its result's
// channel.
func acquireAsync(ctx context.Context, c *coordinator.Coordinator, r coordinator.Resource, owner string, opts ...coordinator.AcquireOption) chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := c.Acquire(ctx, r, owner, opts...)
		ch <- result{l, err}
	}()
	return ch
}

func TestConflictErrorMessages(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r := coordinator.Plan("7")
	for _, tc := range []struct {
		ce   coordinator.ConflictError
		want string
	}{
		{coordinator.ConflictError{Resource: r, Holder: "a", Token: 5, Count: 1, ExpiresAt: exp, Holders: 1, Meta: "host-1", Queued: 2},
			`coordinator: conflict: plan/7 is held by "a" (token 5, count 1) until 2030-01-02T03:04:05Z, meta "host-1"; 2 waiters queued ahead`},
		{coordinator.ConflictError{Resource: r, Holder: "a", Token: 5, Count: 2, ExpiresAt: exp, Mode: coordinator.ModeShared, Holders: 3},
			`coordinator: conflict: plan/7 is held shared by 3 owners, first to expire "a" (token 5, count 2) until 2030-01-02T03:04:05Z`},
		{coordinator.ConflictError{Resource: r, Holder: "a", Token: 5, Count: 1, ExpiresAt: exp, Mode: coordinator.ModeShared, Holders: 1, Permits: 1, Queued: 1},
			`coordinator: conflict: plan/7 is held shared by 1 owner (cap 1), first to expire "a" (token 5, count 1) until 2030-01-02T03:04:05Z; 1 waiter queued ahead`},
		{coordinator.ConflictError{Resource: r, Queued: 1},
			`coordinator: conflict: plan/7 is free but 1 waiter is queued ahead`},
		{coordinator.ConflictError{Resource: r, Queued: 4},
			`coordinator: conflict: plan/7 is free but 4 waiters are queued ahead`},
		{coordinator.ConflictError{Resource: r, Holder: "b", Token: 9, ExpiresAt: exp, Mode: coordinator.ModeShared, Holders: 2, Upgrade: true},
			`coordinator: conflict: plan/7 cannot be upgraded to exclusive: 1 other owner holds it shared (first to expire "b", token 9, until 2030-01-02T03:04:05Z); an upgrade does not wait`},
		{coordinator.ConflictError{Resource: r, Holder: "b", Token: 9, ExpiresAt: exp, Mode: coordinator.ModeShared, Holders: 4, Upgrade: true, Queued: 3},
			`coordinator: conflict: plan/7 cannot be upgraded to exclusive: 3 other owners hold it shared (first to expire "b", token 9, until 2030-01-02T03:04:05Z); an upgrade does not wait`},
	} {
		if got := tc.ce.Error(); got != tc.want {
			t.Errorf("Error() =\n%q, want\n%q", got, tc.want)
		}
	}
	err := fmt.Errorf("store: %w", coordinator.ErrUnsupported)
	if !errors.Is(err, coordinator.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("%v: Is wrong", err)
	}
	if coordinator.ErrUnsupported.Error() != "coordinator: not supported by the store" {
		t.Fatalf("ErrUnsupported = %q", coordinator.ErrUnsupported)
	}
	for m, want := range map[coordinator.Mode]string{coordinator.ModeExclusive: "exclusive", coordinator.ModeShared: "shared", -1: "Mode(-1)"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(m), m.String(), want)
		}
	}
}

// TestSharedWaitersWokenTogether: shared waiters of one coordinator wait
// behind an exclusive holder; its release wakes them all at once, one
// attempt each, whether it went through their coordinator (the local
// hand-off) or another (the notification).
func TestSharedWaitersWokenTogether(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	for _, local := range []bool{true, false} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			ctx := t.Context()
			ms := storetest.NewMemStore()
			cs := &countingStore{Store: ms}
			c := coordinator.New(notifyingStore{cs, ms})
			defer c.Close(ctx)
			releaser := coordinator.New(ms)
			if local {
				releaser = c
			}
			r := coordinator.Plan("readers")
			ok[coordinator.Lease](t)(releaser.Acquire(ctx, r, "writer"))
			var rs []chan result
			for i := range 3 {
				rs = append(rs, acquireAsync(ctx, c, r, fmt.Sprint("r", i), coordinator.Shared(), coordinator.Wait(time.Minute)))
				testutil.Eventually(t, 10*time.Second, "the reader to queue", func() bool { return c.WaitersForTest(r) == i+1 })
			}
			// the first reader's attempt and its retry once subscribed; the
			// others queue behind it without trying
			before := int32(2)
			if local {
				before++ // the writer's acquisition
			}
			testutil.Eventually(t, 10*time.Second, "the first reader's retry", func() bool { return cs.acquires.Load() == before })
			ok[coordinator.Lease](t)(releaser.Release(ctx, r, "writer"))
			for i, ch := range rs {
				if res := <-ch; res.err != nil || res.l.Mode != coordinator.ModeShared {
					t.Fatalf("reader %d: %+v, %v", i, res.l, res.err)
				}
			}
			if n := cs.acquires.Load() - before; n != 3 {
				t.Errorf("%d attempts after the release, want 3: one per reader", n)
			}
			if ls := ok[[]coordinator.Lease](t)(c.Holders(ctx, r)); len(ls) != 3 {
				t.Fatalf("holders %+v", ls)
			}
		})
	}
}

// TestLocalWriterNotOvertaken: a reader arriving while a writer of its
// coordinator waits queues behind the writer, though the resource is held
// shared: the writer gets the resource first.
func TestLocalWriterNotOvertaken(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	ctx := t.Context()
	ms := storetest.NewMemStore()
	cs := &countingStore{Store: ms}
	c := coordinator.New(notifyingStore{cs, ms})
	defer c.Close(ctx)
	r := coordinator.Plan("rw")
	ok[coordinator.Lease](t)(c.Acquire(ctx, r, "r1", coordinator.Shared()))
	w := acquireAsync(ctx, c, r, "writer", coordinator.Wait(time.Minute))
	// r1's acquisition, the writer's attempt and its retry once subscribed
	testutil.Eventually(t, 10*time.Second, "the writer to queue", func() bool { return c.WaitersForTest(r) == 1 && cs.acquires.Load() == 3 })
	attempts := cs.acquires.Load()
	r2 := acquireAsync(ctx, c, r, "r2", coordinator.Shared(), coordinator.Wait(time.Minute))
	testutil.Eventually(t, 10*time.Second, "the reader to queue", func() bool { return c.WaitersForTest(r) == 2 })
	if n := cs.acquires.Load(); n != attempts {
		t.Fatalf("the reader tried %d times: it must queue behind the writer", n-attempts)
	}
	ok[coordinator.Lease](t)(c.Release(ctx, r, "r1"))
	res := <-w
	if res.err != nil || res.l.Owner != "writer" {
		t.Fatalf("writer: %+v, %v", res.l, res.err)
	}
	select {
	case res := <-r2:
		t.Fatalf("the reader got in beside the writer: %+v, %v", res.l, res.err)
	default:
	}
	ok[coordinator.Lease](t)(c.Release(ctx, r, "writer"))
	if res := <-r2; res.err != nil {
		t.Fatalf("reader: %v", res.err)
	}
}

// TestUpgradeConflictEndsWait: an upgrade conflict is returned at once,
// with Wait too, and ends a wait that meets one.
func TestUpgradeConflictEndsWait(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	ctx := t.Context()
	ms := storetest.NewMemStore()
	reg := prometheus.NewRegistry()
	a := coordinator.New(notifyOnly{ms, ms}, coordinator.WithMetrics(reg))
	b := coordinator.New(ms)
	defer a.Close(ctx)
	defer b.Close(ctx)
	r := coordinator.Plan("up")
	ok[coordinator.Lease](t)(b.Acquire(ctx, r, "s1", coordinator.Shared()))
	ok[coordinator.Lease](t)(b.Acquire(ctx, r, "s2", coordinator.Shared()))
	_, err := b.Acquire(ctx, r, "s1", coordinator.Wait(time.Hour))
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || !ce.Upgrade {
		t.Fatalf("upgrade with Wait: %v", err)
	}
	// a waits for r exclusive as "u"; meanwhile u joins the readers
	// through b, so that a's next attempt is an upgrade beside them
	w := acquireAsync(ctx, a, r, "u", coordinator.Wait(time.Hour))
	testutil.Eventually(t, 10*time.Second, "u to wait", func() bool { return a.WaitersForTest(r) == 1 })
	ok[coordinator.Lease](t)(b.Acquire(ctx, r, "u", coordinator.Shared()))
	ok[coordinator.Lease](t)(b.Release(ctx, r, "s1")) // notified: a tries again
	res := <-w
	if !errors.As(res.err, &ce) || !ce.Upgrade || ce.Holder != "s2" {
		t.Fatalf("wait meeting an upgrade conflict: %v", res.err)
	}
	n, err := promtest.GatherAndCount(reg, "lockcoord_wait_duration_seconds")
	if err != nil || n != 1 {
		t.Fatalf("wait histogram: %d series, %v", n, err)
	}
	if got := promtest.ToFloat64(histCount{reg, "lockcoord_wait_duration_seconds", "upgrade"}); got != 1 {
		t.Fatalf("waits ended by an upgrade conflict: %v, want 1", got)
	}
}

// histCount collects the sample count of one labelled series of a
// histogram, as a gauge.
type histCount struct {
	reg   *prometheus.Registry
	name  string
	label string
}

func (h histCount) Describe(chan<- *prometheus.Desc) {}

func (h histCount) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != h.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == h.label {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(h.name, "", nil, nil),
						prometheus.GaugeValue, float64(m.GetHistogram().GetSampleCount()))
				}
			}
		}
	}
}

// TestAcquireAllWaitMoves: an AcquireAll waits for the busy resource its
// last attempt met, holding nothing, and moves to the next busy one,
// leaving the first one's queue in the store.
func TestAcquireAllWaitMoves(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	other := coordinator.New(ms)
	defer c.Close(ctx)
	defer other.Close(ctx)
	a, b := coordinator.Plan("mv-a"), coordinator.Plan("mv-b")
	ok[coordinator.Lease](t)(other.Acquire(ctx, a, "h1"))
	ok[coordinator.Lease](t)(other.Acquire(ctx, b, "h2"))
	done := make(chan result, 1)
	go func() {
		ls, err := c.AcquireAll(ctx, "x", []coordinator.Claim{{Resource: a}, {Resource: b, Mode: coordinator.ModeShared}}, coordinator.Wait(time.Minute))
		done <- result{l: first(ls), err: err}
	}()
	testutil.Eventually(t, 10*time.Second, "x to wait for a", func() bool { return c.WaitersForTest(a) == 1 && len(ms.Queue(a)) == 1 })
	ok[coordinator.Lease](t)(other.Release(ctx, a, "h1"))
	testutil.Eventually(t, 10*time.Second, "x to wait for b", func() bool {
		return c.WaitersForTest(b) == 1 && c.WaitersForTest(a) == 0 && len(ms.Queue(b)) == 1 && len(ms.Queue(a)) == 0
	})
	if _, err := c.Inspect(ctx, a); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("x holds %s while it waits for %s: %v", a, b, err)
	}
	ok[coordinator.Lease](t)(other.Release(ctx, b, "h2"))
	res := <-done
	if res.err != nil || res.l.Resource != a || res.l.Owner != "x" {
		t.Fatalf("AcquireAll: %+v, %v", res.l, res.err)
	}
	if l := ok[coordinator.Lease](t)(c.Inspect(ctx, b)); l.Mode != coordinator.ModeShared || l.Owner != "x" {
		t.Fatalf("%s: %+v", b, l)
	}
	if c.Held(a, "x") != 1 || c.Held(b, "x") != 1 {
		t.Fatal("AcquireAll's holds are not tracked")
	}
	if q := ms.Queue(b); len(q) != 0 {
		t.Fatalf("x still queued for %s: %v", b, q)
	}
}

func first(ls []coordinator.Lease) coordinator.Lease {
	if len(ls) == 0 {
		return coordinator.Lease{}
	}
	return ls[0]
}

// TestAcquireAllQueuesBehindLocalWaiters: an AcquireAll with Wait that
// claims a resource its coordinator's waiters wait for queues behind them
// without trying.
func TestAcquireAllQueuesBehindLocalWaiters(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	ctx := t.Context()
	ms := storetest.NewMemStore()
	cs := &countingStore{Store: ms}
	c := coordinator.New(notifyingStore{cs, ms})
	defer c.Close(ctx)
	a, b := coordinator.Plan("lq-a"), coordinator.Plan("lq-b")
	ok[coordinator.Lease](t)(c.Acquire(ctx, a, "holder"))
	w := acquireAsync(ctx, c, a, "w", coordinator.Wait(time.Minute))
	// the holder's acquisition, w's attempt and its retry once subscribed
	testutil.Eventually(t, 10*time.Second, "w to queue", func() bool { return c.WaitersForTest(a) == 1 && cs.acquires.Load() == 3 })
	before := cs.acquires.Load()
	all := make(chan error, 1)
	go func() {
		_, err := c.AcquireAll(ctx, "x", []coordinator.Claim{{Resource: b}, {Resource: a}}, coordinator.Wait(time.Minute))
		all <- err
	}()
	testutil.Eventually(t, 10*time.Second, "x to queue", func() bool { return c.WaitersForTest(a) == 2 })
	if n := cs.acquires.Load(); n != before {
		t.Fatalf("%d acquisitions: x must queue behind w without trying", n-before)
	}
	ok[coordinator.Lease](t)(c.Release(ctx, a, "holder"))
	if res := <-w; res.err != nil {
		t.Fatal(res.err)
	}
	ok[coordinator.Lease](t)(c.Release(ctx, a, "w"))
	if err := <-all; err != nil {
		t.Fatal(err)
	}
}

// shortStore answers AcquireAll with one lease fewer than asked.
type shortStore struct{ coordinator.Store }

func (s shortStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	ls, err := s.Store.AcquireAll(ctx, reqs)
	return ls[:len(ls)-1], err
}

func TestAcquireAllStoreAnswersWrongCount(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(shortStore{storetest.NewMemStore()})
	_, err := c.AcquireAll(ctx, "x", []coordinator.Claim{{Resource: coordinator.Plan("1")}, {Resource: coordinator.Plan("2")}})
	if err == nil || !strings.Contains(err.Error(), "2 claims with 1 leases") {
		t.Fatalf("AcquireAll = %v, want an error about the store's answer", err)
	}
	if c.Held(coordinator.Plan("1"), "x") != 0 {
		t.Fatal("a broken answer is tracked")
	}
}

// TestHoldAllSignalsLoss: HoldAll keeps every lease alive; the loss of
// one cancels fn's context with its *LostError, HoldAll returns it, and
// every lease is released after.
func TestHoldAllSignalsLoss(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	defer c.Close(ctx)
	a, b := coordinator.Plan("ha-a"), coordinator.Project("ha-b")
	claims := []coordinator.Claim{{Resource: a}, {Resource: b, Mode: coordinator.ModeShared}}
	const ttl = time.Second // room for a late renewal on a loaded machine
	var cause error
	err := c.HoldAll(ctx, "x", claims, func(ctx context.Context, ls []coordinator.Lease) error {
		// both leases renewed past their first TTL
		testutil.Eventually(t, 10*time.Second, "both renewed", func() bool {
			hs := ok[[]coordinator.Lease](t)(ms.Holders(ctx, b))
			l := ok[coordinator.Lease](t)(ms.Inspect(ctx, a))
			return l.ExpiresAt.After(ls[0].ExpiresAt.Add(ttl)) && hs[0].ExpiresAt.After(ls[1].ExpiresAt.Add(ttl))
		})
		// b is taken away behind the holder's back
		if _, err := ms.Release(ctx, coordinator.Request{Resource: b, Owner: "x", RequestID: "gone", All: true}); err != nil {
			return err
		}
		<-ctx.Done()
		cause = context.Cause(ctx)
		return ctx.Err()
	}, coordinator.TTL(ttl))
	var le *coordinator.LostError
	if !errors.As(cause, &le) || le.Resource != b {
		t.Fatalf("fn's context ended with %v, want the loss of %s", cause, b)
	}
	if !errors.As(err, &le) || le.Resource != b || !errors.Is(err, context.Canceled) {
		t.Fatalf("HoldAll = %v, want fn's error and the loss of %s", err, b)
	}
	for _, r := range []coordinator.Resource{a, b} {
		if _, err := ms.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s held after HoldAll: %v", r, err)
		}
	}
}

// TestHoldAllClose: Close cancels a running HoldAll's context with
// ErrClosed and releases its leases.
func TestHoldAllClose(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- c.HoldAll(ctx, "x", []coordinator.Claim{{Resource: coordinator.Plan("1")}, {Resource: coordinator.Plan("2")}},
			func(ctx context.Context, _ []coordinator.Lease) error {
				close(started)
				<-ctx.Done()
				return context.Cause(ctx)
			})
	}()
	<-started
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("HoldAll during Close: %v", err)
	}
	for _, r := range []coordinator.Resource{coordinator.Plan("1"), coordinator.Plan("2")} {
		if _, err := ms.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s held after Close: %v", r, err)
		}
	}
	if _, err := c.AcquireAll(ctx, "x", []coordinator.Claim{{Resource: coordinator.Plan("1")}}); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("AcquireAll after Close: %v", err)
	}
	if _, err := c.Holders(ctx, coordinator.Plan("1")); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("Holders after Close: %v", err)
	}
}

// TestHoldAllAcquisitionAndReleaseErrors: HoldAll returns a refused
// acquisition without running fn, and joins a failed release to fn's
// error.
func TestHoldAllAcquisitionAndReleaseErrors(t *testing.T) {
	ctx := t.Context()
	s := newFakeStore()
	c := coordinator.New(s)
	defer c.Close(ctx)
	r := coordinator.Plan("1")
	ok[coordinator.Lease](t)(c.Acquire(ctx, r, "other"))
	ran := false
	err := c.HoldAll(ctx, "x", []coordinator.Claim{{Resource: r}}, func(context.Context, []coordinator.Lease) error { ran = true; return nil })
	if !errors.Is(err, coordinator.ErrConflict) || ran {
		t.Fatalf("HoldAll of a busy resource: %v (fn ran: %v)", err, ran)
	}
	boom := errors.New("boom")
	err = c.HoldAll(ctx, "x", []coordinator.Claim{{Resource: coordinator.Plan("2")}}, func(context.Context, []coordinator.Lease) error {
		s.setFail(func(op string, _ coordinator.Request) error {
			if op == "release" {
				return boom
			}
			return nil
		})
		return nil
	})
	s.setFail(nil)
	if !errors.Is(err, boom) {
		t.Fatalf("HoldAll with a failing release: %v", err)
	}
}

// TestUpgradeKeepsKeepAlive: a Hold in shared mode whose owner upgrades
// the lease goes on renewing it under its new token, and is not lost; a
// new lease of the owner (count 1) does not take the keep-alive over.
func TestUpgradeKeepsKeepAlive(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	defer c.Close(ctx)
	r := coordinator.Plan("up-keep")
	const ttl = time.Second // room for a late renewal on a loaded machine
	err := c.Hold(ctx, r, "x", func(fctx context.Context, l coordinator.Lease) error {
		u, err := c.Acquire(ctx, r, "x", coordinator.TTL(ttl))
		if err != nil {
			return err
		}
		if u.Token <= l.Token || u.Mode != coordinator.ModeExclusive {
			return fmt.Errorf("upgrade: %+v", u)
		}
		testutil.Eventually(t, 10*time.Second, "renewals of the upgraded lease", func() bool {
			got := ok[coordinator.Lease](t)(ms.Inspect(ctx, r))
			return got.Token == u.Token && got.ExpiresAt.After(u.ExpiresAt.Add(2*ttl))
		})
		if err := fctx.Err(); err != nil {
			return fmt.Errorf("the Hold's context ended: %w", context.Cause(fctx))
		}
		_, err = c.Release(ctx, r, "x")
		return err
	}, coordinator.Shared(), coordinator.TTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	var renewing []coordinator.Lease
	testutil.Eventually(t, 10*time.Second, "the keep-alive to stop", func() bool { renewing = c.Renewing(); return len(renewing) == 0 })
}

// TestAcquireMetricsByMode: the acquire histogram is labelled by mode,
// and AcquireAll has a histogram of its own.
func TestAcquireMetricsByMode(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	c := coordinator.New(storetest.NewMemStore(), coordinator.WithMetrics(reg))
	defer c.Close(ctx)
	ok[coordinator.Lease](t)(c.Acquire(ctx, coordinator.Plan("1"), "x"))
	ok[coordinator.Lease](t)(c.Acquire(ctx, coordinator.Plan("2"), "x", coordinator.Shared()))
	ok[coordinator.Lease](t)(c.Acquire(ctx, coordinator.Plan("3"), "x", coordinator.Permits(2)))
	ok[[]coordinator.Lease](t)(c.AcquireAll(ctx, "y", []coordinator.Claim{{Resource: coordinator.Plan("4")}}))
	if _, err := c.AcquireAll(ctx, "y", []coordinator.Claim{{Resource: coordinator.Plan("1")}}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatal(err)
	}
	for label, want := range map[string]float64{"exclusive": 1, "shared": 2} {
		if got := promtest.ToFloat64(histCount{reg, "lockcoord_acquire_duration_seconds", label}); got != want {
			t.Errorf("acquisitions in mode %s: %v, want %v", label, got, want)
		}
	}
	if n, err := promtest.GatherAndCount(reg, "lockcoord_acquire_all_duration_seconds"); err != nil || n != 2 {
		t.Errorf("acquire_all series: %d, %v; want ok and conflict", n, err)
	}
	if got := promtest.ToFloat64(findGauge(t, reg, "lockcoord_conflicts_total")); got != 1 {
		t.Errorf("conflicts = %v, want 1", got)
	}
}

// TestHoldersValidates: Holders checks the resource before any I/O.
func TestHoldersValidates(t *testing.T) {
	s := newFakeStore()
	c := coordinator.New(s)
	if _, err := c.Holders(t.Context(), coordinator.Resource{Type: "x", ID: ""}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Holders: %v", err)
	}
	if n := len(s.callsOf("")); n != 0 {
		t.Fatalf("%d calls reached the store", n)
	}
}

// TestConcurrentHoldAllsOverlap: HoldAlls of overlapping sets, all
// waiting, on coordinators sharing a store, all finish, and no resource
// ever has two exclusive holders.
func TestConcurrentHoldAllsOverlap(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	rs := []coordinator.Resource{coordinator.Plan("c1"), coordinator.Plan("c2"), coordinator.Plan("c3")}
	var inside [3]atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		c := coordinator.New(ms)
		defer c.Close(ctx)
		claims := []coordinator.Claim{{Resource: rs[i%3]}, {Resource: rs[(i+1)%3]}}
		wg.Go(func() {
			for range 20 {
				err := c.HoldAll(ctx, fmt.Sprint("o", i), claims, func(context.Context, []coordinator.Lease) error {
					for _, cl := range claims {
						j := map[coordinator.Resource]int{rs[0]: 0, rs[1]: 1, rs[2]: 2}[cl.Resource]
						if inside[j].Add(1) != 1 {
							return fmt.Errorf("%s has two holders", cl.Resource)
						}
						defer inside[j].Add(-1)
					}
					return nil
				}, coordinator.Wait(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
