package storetest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// RunFairQueue runs the conformance tests of the FairQueue capability
// against stores from h, which must declare it and Shared, and implement
// coordinator.WaitQueue: waiters get a resource in the order they queued,
// every process in a coordinator of its own; a free resource with queued
// waiters goes to the first of them; shared waiters get in together; a
// waiting writer is not starved by readers; a waiter that died loses its
// turn.
func RunFairQueue(t *testing.T, h Harness) {
	if !has(h, FairQueue) || !has(h, Shared) {
		t.Fatalf("harness %T does not declare the FairQueue and Shared capabilities", h)
	}
	runTests(t, h, []conformanceTest{
		{"FairQueueOrder", testFairOrder},
		{"FairQueueFreeGoesToFirst", testFreeGoesToFirst},
		{"FairQueueSharedWaitersTogether", testSharedWaitersTogether},
		{"FairQueueWriterNotStarved", testWriterNotStarved},
		{"FairQueueDeadWaiterSkipped", testDeadWaiterSkipped},
		{"FairQueueStaleWaiterLosesTurn", testStaleWaiterLosesTurn},
		{"FairQueueUpgradeConflictDoesNotQueue", testUpgradeDoesNotQueue},
	})
}

// probe is a store that counts refused acquisitions: all of them, and
// the queued ones, which have queued their coordinator.
type probe struct {
	coordinator.Store
	coordinator.WaitQueue
	conflicts, refusals atomic.Int32
}

func newProbe(t *testing.T, s coordinator.Store) *probe {
	wq, ok := s.(coordinator.WaitQueue)
	if !ok {
		t.Fatalf("store %T is not a coordinator.WaitQueue", s)
	}
	return &probe{Store: s, WaitQueue: wq}
}

func (p *probe) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	l, err := p.Store.Acquire(ctx, req)
	if errors.Is(err, coordinator.ErrConflict) {
		p.conflicts.Add(1)
	}
	return l, err
}

func (p *probe) AcquireQueued(ctx context.Context, req coordinator.Request, waiter string, q coordinator.Queueing) (coordinator.Lease, error) {
	l, err := p.WaitQueue.AcquireQueued(ctx, req, waiter, q)
	if errors.Is(err, coordinator.ErrConflict) {
		p.conflicts.Add(1)
		p.refusals.Add(1)
	}
	return l, err
}

// queued starts a coordinator of its own on s that waits for r as owner
// (in shared mode when shared) and calls got with its lease; it returns
// once the coordinator is queued.
func queued(t *testing.T, ctx context.Context, s coordinator.Store, r coordinator.Resource, owner string, shared bool,
	got func(c *coordinator.Coordinator, l coordinator.Lease)) *sync.WaitGroup {
	t.Helper()
	p := newProbe(t, s)
	c := coordinator.New(p)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	opts := []coordinator.AcquireOption{coordinator.Wait(time.Minute)}
	if shared {
		opts = append(opts, coordinator.Shared())
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		l, err := c.Acquire(ctx, r, owner, opts...)
		if err != nil {
			t.Errorf("%s waiting for %s: %v", owner, r, err)
			return
		}
		got(c, l)
	})
	testutil.Eventually(t, 10*time.Second, owner+" queued", func() bool { return p.refusals.Load() > 0 })
	return &wg
}

// testFairOrder: eight waiters, each in a coordinator of its own, queued
// one after the other, get the resource in that order.
func testFairOrder(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("fair-order")
	need(t)(c.Acquire(ctx, r, "holder"))
	var (
		mu    sync.Mutex
		order []int
		wgs   []*sync.WaitGroup
	)
	for i := range 8 {
		wgs = append(wgs, queued(t, ctx, s, r, "w"+strconv.Itoa(i), false, func(c *coordinator.Coordinator, l coordinator.Lease) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if _, err := c.Release(ctx, r, l.Owner); err != nil {
				t.Error(err)
			}
		}))
	}
	need(t)(c.Release(ctx, r, "holder"))
	for _, wg := range wgs {
		wg.Wait()
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(order, want) {
		t.Fatalf("waiters got the resource in the order %v, want %v", order, want)
	}
}

// testFreeGoesToFirst: while a waiter is queued, a fresh hold by anyone
// else is refused, also when the resource is free: the refusal names no
// holder and says how many are queued ahead. The first queued then gets
// it.
func testFreeGoesToFirst(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	wq := newProbe(t, s)
	sub, err := wq.ReleasesFor(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	r := coordinator.Plan("fair-first")
	need(t)(c.Acquire(ctx, r, "reader", coordinator.Shared()))
	req := coordinator.Request{Resource: r, Owner: "writer", TTL: time.Minute, RequestID: "ff-1"}
	if _, err := wq.AcquireQueued(ctx, req, "A", coordinator.Queueing{}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("writer beside a reader: %v", err)
	}
	var ce *coordinator.ConflictError
	if _, err := c.Acquire(ctx, r, "late", coordinator.Shared()); !errors.As(err, &ce) || ce.Holder != "reader" || ce.Queued != 1 {
		t.Fatalf("a reader after a queued writer: %v, want a conflict with 1 queued ahead", err)
	}
	need(t)(c.Release(ctx, r, "reader"))
	told(t, sub, "A, first queued", r)
	_, err = c.Acquire(ctx, r, "barger")
	if !errors.As(err, &ce) || ce.Holder != "" || ce.Queued != 1 {
		t.Fatalf("a free resource with a writer queued: %v, want a conflict naming no holder, 1 queued", err)
	}
	req.RequestID = "ff-2"
	if l := need(t)(wq.AcquireQueued(ctx, req, "A", coordinator.Queueing{})); l.Owner != "writer" || l.Mode != coordinator.ModeExclusive {
		t.Fatalf("the first queued: %+v", l)
	}
	need(t)(c.Release(ctx, r, "writer"))
	need(t)(c.Acquire(ctx, r, "late", coordinator.Shared())) // nobody queued any more
}

// testSharedWaitersTogether: shared waiters queued behind an exclusive
// holder all get in when it releases, and hold together.
func testSharedWaitersTogether(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	r := coordinator.Plan("fair-together")
	need(t)(c.Acquire(ctx, r, "writer"))
	var (
		in   atomic.Int32
		done = make(chan struct{})
		wgs  []*sync.WaitGroup
	)
	for i := range 3 {
		wgs = append(wgs, queued(t, ctx, s, r, "r"+strconv.Itoa(i), true, func(*coordinator.Coordinator, coordinator.Lease) {
			in.Add(1)
			<-done
		}))
	}
	need(t)(c.Release(ctx, r, "writer"))
	testutil.Eventually(t, 10*time.Second, "the three readers in", func() bool { return in.Load() == 3 })
	if ls := need2(t)(c.Holders(ctx, r)); len(ls) != 3 {
		t.Fatalf("holders %+v, want the three readers", ls)
	}
	close(done)
	for _, wg := range wgs {
		wg.Wait()
	}
}

// testWriterNotStarved: eight readers, each in a coordinator of its own,
// take a resource shared in a loop; a writer waiting for it gets in, and
// few reader acquisitions overtake it once it is queued: each reader's
// in-flight one at most. (Between its first refusal and its queuing, while
// its coordinator subscribes to notifications, the writer is not queued
// yet: the acquisitions then are reported, not bounded.)
func testWriterNotStarved(t *testing.T, h Harness) {
	ctx, s, _ := setup(t, h)
	r := coordinator.Plan("fair-writer")
	const readers = 8
	var (
		total, overtakes, early atomic.Int32
		writerIn, stopped       atomic.Bool
		wp                      = newProbe(t, s)
		wg                      sync.WaitGroup
	)
	for i := range readers {
		c := coordinator.New(s)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		owner := "reader" + strconv.Itoa(i)
		wg.Go(func() {
			for !stopped.Load() {
				if _, err := c.Acquire(ctx, r, owner, coordinator.Shared(), coordinator.Wait(time.Minute)); err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
				total.Add(1)
				switch {
				case writerIn.Load():
				case wp.refusals.Load() > 0:
					overtakes.Add(1)
				case wp.conflicts.Load() > 0:
					early.Add(1)
				}
				if _, err := c.Release(ctx, r, owner); err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, "the readers looping", func() bool { return total.Load() >= 4*readers })
	w := coordinator.New(wp)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	_, err := w.Acquire(ctx, r, "writer", coordinator.Wait(time.Minute))
	writerIn.Store(true)
	stopped.Store(true)
	if err != nil {
		t.Fatalf("the writer: %v", err)
	}
	need(t)(w.Release(ctx, r, "writer"))
	wg.Wait()
	t.Logf("reader acquisitions that overtook the queued writer: %d (of %d readers, %d acquisitions in all; %d more between its first refusal and its queuing)",
		overtakes.Load(), readers, total.Load(), early.Load())
	if n := overtakes.Load(); n > readers {
		t.Fatalf("%d reader acquisitions overtook the queued writer, more than one per reader", n)
	}
}

// testDeadWaiterSkipped: a release passes over a queued waiter whose
// coordinator no longer listens (its process died) to the next one.
func testDeadWaiterSkipped(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	wq := newProbe(t, s)
	subB, err := wq.ReleasesFor(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = subB.Close() }()
	r := coordinator.Plan("fair-dead")
	need(t)(c.Acquire(ctx, r, "holder"))
	for i, w := range []string{"dead", "B"} {
		req := coordinator.Request{Resource: r, Owner: "o" + w, TTL: time.Minute, RequestID: "dw-" + strconv.Itoa(i)}
		if _, err := wq.AcquireQueued(ctx, req, w, coordinator.Queueing{}); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("%s queuing: %v", w, err)
		}
	}
	need(t)(c.Release(ctx, r, "holder"))
	told(t, subB, "B, behind a dead waiter", r)
	req := coordinator.Request{Resource: r, Owner: "oB", TTL: time.Minute, RequestID: "dw-3"}
	need(t)(wq.AcquireQueued(ctx, req, "B", coordinator.Queueing{}))
}

// testStaleWaiterLosesTurn: a queued waiter that stops trying (its
// process hangs, its subscription lives on) loses its turn after the
// queue life: then others get the resource.
func testStaleWaiterLosesTurn(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	wq := newProbe(t, s)
	sub, err := wq.ReleasesFor(ctx, "stale")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	r := coordinator.Plan("fair-stale")
	need(t)(c.Acquire(ctx, r, "holder"))
	req := coordinator.Request{Resource: r, Owner: "ostale", TTL: time.Minute, RequestID: "st-1"}
	if _, err := wq.AcquireQueued(ctx, req, "stale", coordinator.Queueing{}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("queuing: %v", err)
	}
	need(t)(c.Release(ctx, r, "holder"))
	if _, err := c.Acquire(ctx, r, "other"); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("a fresh hold while a waiter is queued: %v", err)
	}
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, "the stale waiter's turn to lapse", func() bool {
		_, err := c.Acquire(ctx, r, "other")
		return err == nil
	})
	t.Logf("the stale waiter lost its turn %v after it last tried", time.Since(start).Round(time.Millisecond))
}

// testUpgradeDoesNotQueue: a queued acquisition refused as an upgrade
// conflict, never waited out, does not queue its waiter.
func testUpgradeDoesNotQueue(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	wq := newProbe(t, s)
	r := coordinator.Plan("fair-upgrade")
	need(t)(c.Acquire(ctx, r, "a", coordinator.Shared()))
	need(t)(c.Acquire(ctx, r, "b", coordinator.Shared()))
	req := coordinator.Request{Resource: r, Owner: "a", TTL: time.Minute, RequestID: "up-1"}
	_, err := wq.AcquireQueued(ctx, req, "A", coordinator.Queueing{})
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || !ce.Upgrade {
		t.Fatalf("upgrade beside b: %v", err)
	}
	if l := need(t)(c.Acquire(ctx, r, "c", coordinator.Shared())); l.Owner != "c" {
		t.Fatalf("a reader after a refused upgrade: %+v", l)
	}
}
