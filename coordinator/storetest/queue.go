package storetest

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// RunNotifier runs the conformance tests of the optional Notifier
// capability against stores from h, which must implement it: a release
// that deletes a lease reaches every subscriber, from the moment Releases
// returns, and Close ends the subscription.
func RunNotifier(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"NotifierReleaseAnnounced", testReleaseAnnounced},
		{"NotifierReleaseAllAnnounced", testReleaseAllAnnounced},
		{"NotifierClose", testSubscriptionClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// RunWaitQueue runs the conformance tests of the optional WaitQueue
// capability against stores from h, which must implement it: refused
// queued acquisitions queue their waiter once, in order; a release tells
// the first queued waiter, or hands the lease to the releaser's own
// waiters when it is the first; a waiter that leaves the queue passes on
// a release it was told of and did not use.
//
// The tests observe the queue through the notifications a waiter's
// subscription gets and through ReleaseHandOff's report, never through
// the backend's keys.
func RunWaitQueue(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
		// barges: the test takes a free resource ahead of its queued
		// waiters, which a FairQueue store refuses (RunFairQueue tests
		// the fair hand-off instead)
		barges bool
	}{
		{"WaitQueueFirstQueuedIsTold", testFirstQueuedIsTold, true},
		{"WaitQueueAcquisitionLeaves", testQueuedAcquisitionLeaves, false},
		{"WaitQueueStayQueued", testStayQueued, false},
		{"WaitQueueHandOffWaitsItsTurn", testHandOffWaitsItsTurn, true},
		{"WaitQueueUnqueue", testUnqueue, false},
		{"WaitQueueUnqueuePassesOn", testUnqueuePassesOn, false},
		{"WaitQueueUnqueueLeavesHeldLease", testUnqueueLeavesHeldLease, true},
	}
	// a FairQueue store lets nobody take a free resource ahead of its
	// queued waiters: the tests that barge do not apply (RunFairQueue
	// tests its hand-off instead), and are not run rather than skipped
	fair := has(h, FairQueue)
	for _, tc := range tests {
		if tc.barges && fair {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// notifyEnv is a store with its Notifier and WaitQueue capabilities, and a
// source of request ids.
type notifyEnv struct {
	t   *testing.T
	ctx context.Context
	s   coordinator.Store
	wq  coordinator.WaitQueue // nil for RunNotifier's stores without it
	seq atomic.Int64
}

func newNotifyEnv(t *testing.T, h Harness, needQueue bool) *notifyEnv {
	s := h.NewStore(t)
	e := &notifyEnv{t: t, ctx: t.Context(), s: s}
	if _, ok := s.(coordinator.Notifier); !ok {
		t.Fatalf("store %T is not a coordinator.Notifier", s)
	}
	e.wq, _ = s.(coordinator.WaitQueue)
	if needQueue && e.wq == nil {
		t.Fatalf("store %T is not a coordinator.WaitQueue", s)
	}
	return e
}

// req returns a request of owner on r with a fresh request id.
func (e *notifyEnv) req(r coordinator.Resource, owner string) coordinator.Request {
	return coordinator.Request{Resource: r, Owner: owner, TTL: time.Minute,
		RequestID: "storetest-" + strconv.FormatInt(e.seq.Add(1), 10)}
}

// subscribe returns a subscription, for waiter's releases when waiter is
// not empty, closed at the end of the test.
func (e *notifyEnv) subscribe(waiter string) coordinator.Subscription {
	e.t.Helper()
	var sub coordinator.Subscription
	var err error
	if waiter == "" {
		sub, err = e.s.(coordinator.Notifier).Releases(e.ctx)
	} else {
		sub, err = e.wq.ReleasesFor(e.ctx, waiter)
	}
	if err != nil {
		e.t.Fatalf("subscribe (waiter %q): %v", waiter, err)
	}
	e.t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func (e *notifyEnv) acquire(r coordinator.Resource, owner string) {
	e.t.Helper()
	need(e.t)(e.s.Acquire(e.ctx, e.req(r, owner)))
}

func (e *notifyEnv) release(r coordinator.Resource, owner string) {
	e.t.Helper()
	need(e.t)(e.s.Release(e.ctx, e.req(r, owner)))
}

// queue makes a queued acquisition of r by owner, as waiter, that must
// meet holder's lease.
func (e *notifyEnv) queue(r coordinator.Resource, owner, waiter, holder string) {
	e.t.Helper()
	_, err := e.wq.AcquireQueued(e.ctx, e.req(r, owner), waiter, coordinator.Queueing{})
	var ce *coordinator.ConflictError
	if !errors.As(err, &ce) || ce.Holder != holder || ce.Resource != r {
		e.t.Fatalf("queued acquisition of %s by %s (waiter %s): %v, want a *ConflictError naming %s", r, owner, waiter, err, holder)
	}
}

// handOff releases owner's lease on r as waiter's ReleaseHandOff and
// returns whether the lease went to waiter's own waiters.
func (e *notifyEnv) handOff(r coordinator.Resource, owner, waiter string) bool {
	e.t.Helper()
	l, handed, err := e.wq.ReleaseHandOff(e.ctx, e.req(r, owner), waiter)
	if err != nil || l.Count != 0 || l.Owner != owner {
		e.t.Fatalf("ReleaseHandOff of %s by %s (waiter %s) = %+v, %v: want the lease deleted", r, owner, waiter, l, err)
	}
	return handed
}

func (e *notifyEnv) unqueue(r coordinator.Resource, waiter string) {
	e.t.Helper()
	if err := e.wq.Unqueue(e.ctx, r, waiter); err != nil {
		e.t.Fatalf("Unqueue(%s, %s): %v", r, waiter, err)
	}
}

// receive returns the next resource sub delivers; it fails the test when
// none comes within 10 s or the subscription is closed.
func receive(t *testing.T, sub coordinator.Subscription, who string) coordinator.Resource {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case r, ok := <-sub.Released():
		if !ok {
			t.Fatalf("%s: subscription closed", who)
		}
		return r
	case <-timer.C:
		t.Fatalf("%s: no release notification within 10s", who)
	}
	return coordinator.Resource{}
}

// told fails the test unless sub's next notification is r.
func told(t *testing.T, sub coordinator.Subscription, who string, r coordinator.Resource) {
	t.Helper()
	if got := receive(t, sub, who); got != r {
		t.Fatalf("%s was told of %s, want %s", who, got, r)
	}
}

func testReleaseAnnounced(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, false)
	a, b := e.subscribe(""), e.subscribe("")
	for _, r := range []coordinator.Resource{coordinator.Plan("n1"), {Type: "job", ID: "n2/ü"}, coordinator.Plan("n1")} {
		e.acquire(r, "w1")
		e.release(r, "w1")
		told(t, a, "the first subscriber", r)
		told(t, b, "the second subscriber", r)
	}
}

func testReleaseAllAnnounced(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, false)
	sub := e.subscribe("")
	want := []coordinator.Resource{coordinator.Plan("all1"), coordinator.Project("all2")}
	for _, r := range want {
		e.acquire(r, "w1")
	}
	if n, err := e.s.ReleaseAll(e.ctx, "w1", "storetest-all"); err != nil || n != len(want) {
		t.Fatalf("ReleaseAll = %d, %v; want %d", n, err, len(want))
	}
	got := []coordinator.Resource{receive(t, sub, "the subscriber"), receive(t, sub, "the subscriber")}
	byName := func(a, b coordinator.Resource) int { return cmp.Compare(a.String(), b.String()) }
	slices.SortFunc(got, byName)
	slices.SortFunc(want, byName)
	if !slices.Equal(got, want) {
		t.Fatalf("ReleaseAll announced %v, want %v", got, want)
	}
}

func testSubscriptionClose(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, false)
	sub := e.subscribe("")
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case _, open := <-sub.Released():
			if !open {
				return
			}
		case <-timer.C:
			t.Fatal("Released() still open 10s after Close")
		}
	}
}

// testFirstQueuedIsTold: a release tells the first queued waiter, which a
// second queued acquisition does not move; the waiter told leaves the
// queue.
func testFirstQueuedIsTold(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	subA := e.subscribe("A")
	e.subscribe("B")
	r := coordinator.Plan("first")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.queue(r, "oB", "B", "holder")
	e.queue(r, "oA", "A", "holder") // A keeps its place
	e.release(r, "holder")
	told(t, subA, "A, first queued", r)
	// B is now the first queued: its coordinator's release keeps the turn
	e.acquire(r, "x")
	if !e.handOff(r, "x", "B") {
		t.Fatal("B was not first in the queue after A was told")
	}
}

// testQueuedAcquisitionLeaves: a queued acquisition that succeeds takes
// its waiter out of the queue; a release with nobody queued reaches
// ReleasesFor's subscribers too.
func testQueuedAcquisitionLeaves(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	subA := e.subscribe("A")
	r := coordinator.Plan("leaves")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.release(r, "holder")
	told(t, subA, "A", r)
	l := need(t)(e.wq.AcquireQueued(e.ctx, e.req(r, "oA"), "A", coordinator.Queueing{}))
	if l.Owner != "oA" || l.Count != 1 {
		t.Fatalf("queued acquisition of a free resource = %+v", l)
	}
	if e.handOff(r, "oA", "A") {
		t.Fatal("A is still queued after its acquisition succeeded")
	}
	told(t, subA, "A, of a release with nobody queued", r)
}

// testStayQueued: a queued acquisition with StayQueued keeps its waiter
// in the queue.
func testStayQueued(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	subA := e.subscribe("A")
	r := coordinator.Plan("stays")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.release(r, "holder")
	told(t, subA, "A", r)
	need(t)(e.wq.AcquireQueued(e.ctx, e.req(r, "oA"), "A", coordinator.Queueing{StayQueued: true}))
	if !e.handOff(r, "oA", "A") {
		t.Fatal("A left the queue although its acquisition asked to stay queued")
	}
}

// testHandOffWaitsItsTurn: a releaser queued behind another waiter does
// not keep the turn: the first queued is told.
func testHandOffWaitsItsTurn(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	e.subscribe("A")
	subB := e.subscribe("B")
	r := coordinator.Plan("turn")
	e.acquire(r, "oA")
	e.queue(r, "oB", "B", "oA")
	e.queue(r, "oA2", "A", "oA") // another waiter of A's coordinator
	if e.handOff(r, "oA", "A") {
		t.Fatal("A kept the turn, queued behind B")
	}
	told(t, subB, "B, first queued", r)
	e.acquire(r, "y")
	if !e.handOff(r, "y", "A") {
		t.Fatal("A was not first in the queue after B was told")
	}
}

// testUnqueue: a waiter that leaves the queue is not told of the next
// release; the next queued waiter is. Unqueue of a waiter that was never
// queued is no error.
func testUnqueue(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	e.subscribe("A")
	subB := e.subscribe("B")
	r := coordinator.Plan("unqueue")
	e.unqueue(r, "never")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.queue(r, "oB", "B", "holder")
	e.unqueue(r, "A")
	e.release(r, "holder")
	told(t, subB, "B, first queued once A left", r)
}

// testUnqueuePassesOn: a waiter that was told of a release and leaves
// the queue without using it (its last waiter gave up) passes the release
// on to the next queued waiter while the lease is free.
func testUnqueuePassesOn(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	subA := e.subscribe("A")
	subB := e.subscribe("B")
	r := coordinator.Plan("passed-on")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.queue(r, "oB", "B", "holder")
	e.release(r, "holder")
	told(t, subA, "A", r)
	e.unqueue(r, "A")
	told(t, subB, "B, passed on by A", r)
}

// testUnqueueLeavesHeldLease: a waiter that leaves after being told, when
// the lease was taken again meanwhile, leaves the next queued waiter
// queued for the next release.
func testUnqueueLeavesHeldLease(t *testing.T, h Harness) {
	e := newNotifyEnv(t, h, true)
	subA := e.subscribe("A")
	e.subscribe("B")
	r := coordinator.Plan("held-again")
	e.acquire(r, "holder")
	e.queue(r, "oA", "A", "holder")
	e.queue(r, "oB", "B", "holder")
	e.release(r, "holder")
	told(t, subA, "A", r)
	e.acquire(r, "barger")
	e.unqueue(r, "A")
	if !e.handOff(r, "barger", "B") {
		t.Fatal("B is not first in the queue after A left a held lease")
	}
}
