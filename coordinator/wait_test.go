package coordinator_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// countingStore counts acquisition attempts (Acquire, AcquireAll) and hides the Notifier of the
// store it wraps unless notify is set.
// countingStore counts the acquisitions that came back from the store:
// a test that waits for a count then knows that the attempts it counted
// are over, not in flight (an attempt in flight could still cross a
// release the test makes next).
type countingStore struct {
	coordinator.Store
	acquires atomic.Int32
}

func (s *countingStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	defer s.acquires.Add(1)
	return s.Store.Acquire(ctx, req)
}

func (s *countingStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	defer s.acquires.Add(1)
	return s.Store.AcquireAll(ctx, reqs)
}

type notifyingStore struct {
	*countingStore
	coordinator.Notifier
}

func TestWaitWakesOnRelease(t *testing.T) {
	// no fallback polling within the test: only a notification can wake the waiter
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	e := newMiniEnv(t)
	ctx := t.Context()
	cs := &countingStore{Store: e.store}
	reg := prometheus.NewRegistry()
	waiter := coordinator.New(notifyingStore{cs, e.store}, coordinator.WithMetrics(reg))
	defer waiter.Close(ctx)
	r := coordinator.Plan("handoff")
	held, err := e.c.Acquire(ctx, r, "holder")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan coordinator.Lease, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := waiter.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
		errc <- err
		got <- l
	}()
	// the first attempt, and the retry once subscribed, both refused
	testutil.Eventually(t, 10*time.Second, "the waiter to wait", func() bool {
		return promtest.ToFloat64(findGauge(t, reg, "lockcoord_conflicts_total")) >= 2
	})
	if _, err := e.c.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	l := <-got
	if l.Owner != "waiter" || l.Token <= held.Token {
		t.Fatalf("waiter got %+v", l)
	}
	// woken by the notification: one more attempt, not a polling series
	if n := cs.acquires.Load(); n != 3 {
		t.Errorf("%d acquisition attempts, want 3 (conflict, conflict after subscribing, success on notification)", n)
	}
}

func TestWaitNoticesExpiredHolder(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	cs := &countingStore{Store: e.store}
	waiter := coordinator.New(notifyingStore{cs, e.store})
	defer waiter.Close(ctx)
	r := coordinator.Plan("crashed")
	if _, err := e.c.Acquire(ctx, r, "dead", coordinator.TTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
		errc <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter to wait", func() bool { return cs.acquires.Load() >= 2 })
	e.mr.FastForward(3 * time.Second) // the holder's lease expires: no release, no notification
	if err := <-errc; err != nil {
		t.Fatalf("waiter did not notice the expiry: %v", err)
	}
}

func TestWaitByPollingWithoutNotifications(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	cs := &countingStore{Store: e.store}
	waiter := coordinator.New(cs) // no Notifier: polls
	defer waiter.Close(ctx)
	r := coordinator.Plan("poll")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
		errc <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter to wait", func() bool { return cs.acquires.Load() >= 2 })
	if _, err := e.c.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("polling waiter: %v", err)
	}
}

func TestWaitGivesUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newMiniEnv(t, coordinator.WithMetrics(reg))
	ctx := t.Context()
	r := coordinator.Plan("busy")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Acquire(ctx, r, "waiter", coordinator.Wait(30*time.Millisecond))
	var ce *coordinator.ConflictError
	if !errors.Is(err, coordinator.ErrConflict) || !errors.As(err, &ce) || ce.Holder != "holder" {
		t.Fatalf("Wait ran out: %v, want the last *ConflictError", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait ran out, not the context: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := e.c.Acquire(cctx, r, "waiter", coordinator.Wait(time.Minute))
		errc <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter waiting", func() bool { return e.c.WaitersForTest(r) == 1 })
	cancel()
	err = <-errc
	if !errors.Is(err, coordinator.ErrConflict) || !errors.Is(err, context.Canceled) || !errors.As(err, &ce) {
		t.Fatalf("cancelled wait: %v, want ErrConflict joined with context.Canceled", err)
	}
	if _, err := e.c.Acquire(ctx, r, "w", coordinator.Wait(-1)); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("negative wait: %v", err)
	}
	if n, _ := promtest.GatherAndCount(reg, "lockcoord_wait_duration_seconds"); n != 2 {
		t.Errorf("wait histogram has %d series, want timeout and cancelled", n)
	}
}

func TestCloseEndsWaits(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("closing")
	holder := coordinator.New(e.store)
	defer holder.Close(ctx)
	if _, err := holder.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := e.c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Hour))
		errc <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter waiting", func() bool { return e.c.WaitersForTest(r) == 1 })
	if err := e.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, coordinator.ErrClosed) || !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("wait during Close: %v", err)
	}
}

// TestSixteenWaiters: every waiter holds the resource exactly once, never
// two at a time.
func TestSixteenWaiters(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Project("queue")
	var inside, maxInside atomic.Int32
	held := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		owner := "w" + strconv.Itoa(i)
		wg.Go(func() {
			errs <- e.c.Hold(ctx, r, owner, func(ctx context.Context, l coordinator.Lease) error {
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				mu.Lock()
				held[owner]++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // holding a while: part of the test, overlaps would show
				inside.Add(-1)
				return nil
			}, coordinator.Wait(time.Minute))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	}
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
	if len(held) != 16 {
		t.Fatalf("%d of 16 waiters held the resource", len(held))
	}
	for o, n := range held {
		if n != 1 {
			t.Fatalf("%s held it %d times", o, n)
		}
	}
}

// silentNotifier subscribes but never delivers a notification: only a
// local hand-off (or polling) can wake a waiter.
type silentNotifier struct{}

func (silentNotifier) Releases(context.Context) (coordinator.Subscription, error) {
	return &silentSub{ch: make(chan coordinator.Resource)}, nil
}

type silentSub struct {
	once sync.Once
	ch   chan coordinator.Resource
}

func (s *silentSub) Released() <-chan coordinator.Resource { return s.ch }
func (s *silentSub) Close() error                          { s.once.Do(func() { close(s.ch) }); return nil }

// TestWaitLocalHandoff: a release through the waiter's own coordinator
// hands the lease over at once, without the notification; a second
// waiter queues behind the first without an attempt of its own, and each
// hand-off costs one attempt.
func TestWaitLocalHandoff(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	e := newMiniEnv(t)
	ctx := t.Context()
	cs := &countingStore{Store: e.store}
	c := coordinator.New(notifyingStore{cs, silentNotifier{}})
	defer c.Close(ctx)
	r := coordinator.Plan("local")
	if _, err := c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   coordinator.Lease
		err error
	}
	waitFor := func(owner string) chan result {
		ch := make(chan result, 1)
		go func() {
			l, err := c.Acquire(ctx, r, owner, coordinator.Wait(time.Minute))
			ch <- result{l, err}
		}()
		return ch
	}
	a := waitFor("a")
	// the first attempt, and the retry once subscribed
	testutil.Eventually(t, 10*time.Second, "a to wait", func() bool { return c.WaitersForTest(r) == 1 && cs.acquires.Load() == 3 })
	b := waitFor("b")
	testutil.Eventually(t, 10*time.Second, "b to queue", func() bool { return c.WaitersForTest(r) == 2 })
	if n := cs.acquires.Load(); n != 3 {
		t.Fatalf("%d attempts once b queued, want 3: b queues behind a without trying", n)
	}
	if _, err := c.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	ra := <-a
	if ra.err != nil || ra.l.Owner != "a" {
		t.Fatalf("a: %+v, %v", ra.l, ra.err)
	}
	// a's acquisition was the only attempt: b, not the head, stayed put
	if n := cs.acquires.Load(); n != 4 {
		t.Fatalf("%d attempts after the first hand-off, want 4", n)
	}
	// a holder that waits again queues behind b
	c2 := waitFor("holder")
	testutil.Eventually(t, 10*time.Second, "the holder to queue", func() bool { return c.WaitersForTest(r) == 2 })
	if _, err := c.Release(ctx, r, "a"); err != nil {
		t.Fatal(err)
	}
	if rb := <-b; rb.err != nil || rb.l.Owner != "b" {
		t.Fatalf("b: %+v, %v", rb.l, rb.err)
	}
	if _, err := c.Release(ctx, r, "b"); err != nil {
		t.Fatal(err)
	}
	if rh := <-c2; rh.err != nil || rh.l.Owner != "holder" {
		t.Fatalf("holder: %+v, %v", rh.l, rh.err)
	}
	if n := cs.acquires.Load(); n != 6 {
		t.Errorf("%d attempts in all, want 6: one per hand-off", n)
	}
}

// TestWaitReentryDoesNotQueue: the holder acquiring again with Wait
// re-enters at once, though others queue for the resource.
func TestWaitReentryDoesNotQueue(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, time.Minute)()
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("reenter")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := e.c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
		errc <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter to queue", func() bool { return e.c.WaitersForTest(r) == 1 })
	l, err := e.c.Acquire(ctx, r, "holder", coordinator.Wait(time.Minute))
	if err != nil || l.Count != 2 {
		t.Fatalf("re-entry while a waiter queues: %+v, %v", l, err)
	}
	// the same owner through another coordinator (another process)
	other := coordinator.New(e.store)
	defer other.Close(ctx)
	if l, err := other.Acquire(ctx, r, "holder", coordinator.Wait(time.Minute)); err != nil || l.Count != 3 {
		t.Fatalf("re-entry through another coordinator: %+v, %v", l, err)
	}
	for range 3 {
		if _, err := e.c.Release(ctx, r, "holder"); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}

// recordingNotifier is a silentNotifier that counts its open
// subscriptions.
type recordingNotifier struct{ open atomic.Int32 }

func (n *recordingNotifier) Releases(context.Context) (coordinator.Subscription, error) {
	n.open.Add(1)
	return &recordingSub{silentSub: silentSub{ch: make(chan coordinator.Resource)}, n: n}, nil
}

type recordingSub struct {
	silentSub
	n *recordingNotifier
}

func (s *recordingSub) Close() error {
	s.once.Do(func() { close(s.ch); s.n.open.Add(-1) })
	return nil
}

// TestWaitHeadFirst: the head of a queue polls and gets the lease first,
// the next waiter after the head's release; the subscription ends a little
// after the last waiter left.
func TestWaitHeadFirst(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, 5*time.Millisecond)()
	e := newMiniEnv(t)
	ctx := t.Context()
	n := &recordingNotifier{}
	c := coordinator.New(notifyingStore{&countingStore{Store: e.store}, n})
	defer c.Close(ctx)
	r := coordinator.Plan("promote")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	head := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, r, "head", coordinator.Wait(time.Minute))
		head <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the head to queue", func() bool { return c.WaitersForTest(r) == 1 })
	next := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, r, "next", coordinator.Wait(time.Minute))
		next <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the next to queue", func() bool { return c.WaitersForTest(r) == 2 })
	// a release the notifier does not announce: the head finds it by
	// polling, and the next waiter, promoted, after the head's release
	if _, err := e.c.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	// one of them gets the lease by polling; the other, promoted if it
	// was not the head, gets it after the first releases
	var first error
	select {
	case first = <-head:
		if first == nil {
			if _, err := c.Release(ctx, r, "head"); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-next; err != nil {
			t.Fatalf("next: %v", err)
		}
	case first = <-next:
		t.Fatalf("the second waiter got the lease before the head: %v", first)
	}
	if first != nil {
		t.Fatalf("head: %v", first)
	}
	testutil.Eventually(t, 10*time.Second, "the subscription to end", func() bool { return n.open.Load() == 0 })
}

// TestWaitHeadGivesUp: the next waiter polls once the head gave up.
func TestWaitHeadGivesUp(t *testing.T) {
	defer coordinator.SetPollForTest(time.Minute, 5*time.Millisecond)()
	e := newMiniEnv(t)
	ctx := t.Context()
	c := coordinator.New(notifyingStore{&countingStore{Store: e.store}, silentNotifier{}})
	defer c.Close(ctx)
	r := coordinator.Plan("giveup")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	head := make(chan error, 1)
	go func() {
		_, err := c.Acquire(hctx, r, "head", coordinator.Wait(time.Minute))
		head <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the head to queue", func() bool { return c.WaitersForTest(r) == 1 })
	next := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, r, "next", coordinator.Wait(time.Minute))
		next <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the next to queue", func() bool { return c.WaitersForTest(r) == 2 })
	cancel()
	if err := <-head; !errors.Is(err, context.Canceled) {
		t.Fatalf("head: %v", err)
	}
	if _, err := e.c.Release(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	if err := <-next; err != nil {
		t.Fatalf("next, promoted, did not poll: %v", err)
	}
}
