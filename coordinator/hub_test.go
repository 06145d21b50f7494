package coordinator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// subscribeGate holds subscriptions back, as a subscribe round trip to a
// slow Redis does, until the test opens it.
type subscribeGate struct {
	calls     atomic.Int32  // subscriptions asked for
	entered   chan struct{} // closed when a subscription was asked for
	enterOnce sync.Once
	gate      chan struct{} // closed by open
	openOnce  sync.Once
}

func newSubscribeGate() *subscribeGate {
	return &subscribeGate{entered: make(chan struct{}), gate: make(chan struct{})}
}

// pass blocks until the gate is open or ctx ends.
func (g *subscribeGate) pass(ctx context.Context) error {
	g.calls.Add(1)
	g.enterOnce.Do(func() { close(g.entered) })
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *subscribeGate) open() { g.openOnce.Do(func() { close(g.gate) }) }

// gatedNotifier is a Notifier whose Releases passes a gate first.
type gatedNotifier struct {
	coordinator.Notifier
	g *subscribeGate
}

func (n gatedNotifier) Releases(ctx context.Context) (coordinator.Subscription, error) {
	if err := n.g.pass(ctx); err != nil {
		return nil, err
	}
	return n.Notifier.Releases(ctx)
}

// gatedQueueStore is the Redis store (a WaitQueue) whose ReleasesFor
// passes a gate first.
type gatedQueueStore struct {
	*redisstore.Store
	g *subscribeGate
}

func (s gatedQueueStore) ReleasesFor(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	if err := s.g.pass(ctx); err != nil {
		return nil, err
	}
	return s.Store.ReleasesFor(ctx, waiter)
}

// gatedStores builds the stores whose subscriptions pass a gate: a
// Notifier, and the Redis store (a WaitQueue).
func gatedStores() map[string]func(*miniEnv, *subscribeGate) coordinator.Store {
	return map[string]func(*miniEnv, *subscribeGate) coordinator.Store{
		"notifier": func(e *miniEnv, g *subscribeGate) coordinator.Store {
			return notifyingStore{&countingStore{Store: e.store}, gatedNotifier{e.store, g}}
		},
		"wait queue": func(e *miniEnv, g *subscribeGate) coordinator.Store {
			return gatedQueueStore{e.store, g}
		},
	}
}

// TestHubReleaseDuringSubscribe: a release through the coordinator does
// not wait for a waiter's subscription to the release notifications (a
// round trip to the store), and the waiter, whose subscription was not
// active yet, still learns of the release: it gets the lease without
// polling. It failed (the release waited for the subscribe) when the hub
// subscribed holding the lock that a release takes.
func TestHubReleaseDuringSubscribe(t *testing.T) {
	for name, store := range gatedStores() {
		t.Run(name, func(t *testing.T) {
			defer coordinator.SetPollForTest(time.Minute, time.Minute)()
			e := newMiniEnv(t)
			ctx := t.Context()
			g := newSubscribeGate()
			defer g.open()
			c := coordinator.New(store(e, g))
			defer c.Close(ctx)
			releaseDuringSubscribe(t, ctx, c, g)
		})
	}
}

func releaseDuringSubscribe(t *testing.T, ctx context.Context, c *coordinator.Coordinator, g *subscribeGate) {
	t.Helper()
	r := coordinator.Plan("subscribing")
	if _, err := c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   coordinator.Lease
		err error
	}
	waited := make(chan result, 1)
	go func() {
		l, err := c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
		waited <- result{l, err}
	}()
	select {
	case <-g.entered:
	case <-time.After(waitBound):
		t.Fatal("the waiter did not subscribe")
	}

	released := make(chan error, 1)
	go func() {
		_, err := c.Release(ctx, r, "holder")
		released <- err
	}()
	select {
	case err := <-released:
		if err != nil {
			t.Fatalf("release: %v", err)
		}
	case <-time.After(waitBound):
		g.open()
		t.Fatalf("the release waited for the waiter's subscribe (then: %v)", <-released)
	}

	g.open()
	if res := <-waited; res.err != nil || res.l.Owner != "waiter" {
		t.Fatalf("waiter: %+v, %v", res.l, res.err)
	}
}

// TestHubCloseDuringSubscribe: a subscription that was being opened when
// Close closed the hub is closed as soon as it is open (goleak sees its
// goroutines otherwise), and the waiter ends with ErrClosed.
func TestHubCloseDuringSubscribe(t *testing.T) {
	for name, store := range gatedStores() {
		t.Run(name, func(t *testing.T) {
			defer coordinator.SetPollForTest(time.Minute, time.Minute)()
			e := newMiniEnv(t)
			ctx := t.Context()
			g := newSubscribeGate()
			defer g.open()
			c := coordinator.New(store(e, g))
			r := coordinator.Plan("closing")
			if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() {
				_, err := c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute))
				waited <- err
			}()
			select {
			case <-g.entered:
			case <-time.After(waitBound):
				t.Fatal("the waiter did not subscribe")
			}
			closed := make(chan error, 1)
			go func() { closed <- c.Close(ctx) }()
			testutil.Eventually(t, 10*time.Second, "Close to close the hub", c.HubClosedForTest)
			g.open()
			if err := <-closed; err != nil {
				t.Fatalf("close: %v", err)
			}
			if err := <-waited; !errors.Is(err, coordinator.ErrClosed) || !errors.Is(err, coordinator.ErrConflict) {
				t.Fatalf("waiter: %v, want ErrConflict joined with ErrClosed", err)
			}
		})
	}
}

// TestHubSubscribesOnce: waiters that join while the subscription is being
// opened wait for it instead of opening one each, and each gets the lease
// in turn.
func TestHubSubscribesOnce(t *testing.T) {
	for name, store := range gatedStores() {
		t.Run(name, func(t *testing.T) {
			defer coordinator.SetPollForTest(time.Minute, time.Minute)()
			e := newMiniEnv(t)
			ctx := t.Context()
			g := newSubscribeGate()
			defer g.open()
			c := coordinator.New(store(e, g))
			defer c.Close(ctx)
			r := coordinator.Plan("once")
			if _, err := c.Acquire(ctx, r, "holder"); err != nil {
				t.Fatal(err)
			}
			waited := make(chan string, 2)
			for _, owner := range []string{"a", "b"} {
				go func() {
					_, err := c.Acquire(ctx, r, owner, coordinator.Wait(time.Minute))
					if err != nil {
						t.Errorf("%s: %v", owner, err)
					}
					waited <- owner
				}()
			}
			testutil.Eventually(t, 10*time.Second, "both waiters to queue", func() bool { return c.WaitersForTest(r) == 2 })
			g.open()
			if _, err := c.Release(ctx, r, "holder"); err != nil {
				t.Fatal(err)
			}
			first := <-waited
			if _, err := c.Release(ctx, r, first); err != nil {
				t.Fatal(err)
			}
			<-waited
			if n := g.calls.Load(); n != 1 {
				t.Fatalf("%d subscriptions asked for, want 1", n)
			}
		})
	}
}
