package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// notifiedAgain releases r, held by w1, until sub reports it (a
// notification published while the subscription is being remade is
// lost by design), or fails after 15 s.
func notifiedAgain(t *testing.T, s *redisstore.Store, sub coordinator.Subscription, r coordinator.Resource, ids *reqIDs) {
	t.Helper()
	ctx := t.Context()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := testutil.Poll(pctx, 0, func() error {
		lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
		select {
		case got, ok := <-sub.Released():
			if !ok {
				t.Fatal("subscription closed")
			}
			if got == r {
				return nil
			}
		case <-time.After(200 * time.Millisecond):
		}
		return testutil.ErrNotYet
	})
	if err != nil {
		t.Fatalf("no notification for %v within 15 s", r)
	}
}

// TestReleasesAfterBlackhole: a subscription whose connection stops
// answering (no RST, no FIN: a dead peer or a cut network) is noticed by
// its health check (PING, then a new connection) and delivers
// notifications again once the network heals.
func TestReleasesAfterBlackhole(t *testing.T) {
	defer redisstore.SetHealthEveryForTest(50 * time.Millisecond)()
	srv := testredis.Start(t)
	proxy := testredis.NewProxy(t, srv.Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr})
	t.Cleanup(func() { _ = viaProxy.Close() })
	direct := srv.Client(t)
	prefix := randomPrefix()
	listen := redisstore.New(viaProxy, redisstore.WithPrefix(prefix), redisstore.WithPartitions(2))
	s := redisstore.New(direct, redisstore.WithPrefix(prefix), redisstore.WithPartitions(2))
	deleteKeys(t, direct, s.Layout())
	ctx := t.Context()
	sub, err := listen.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	r := coordinator.Plan("blackholed")
	var ids reqIDs // request ids stay unique: a repeated one is not applied again
	notifiedAgain(t, s, sub, r, &ids)

	proxy.Blackhole()
	// the fault lasts several health periods: PING unanswered,
	// subscriptions replaced (their SUBSCRIBE unanswered too) at least
	// twice
	time.Sleep(10 * 50 * time.Millisecond)
	proxy.Heal()
	notifiedAgain(t, s, sub, r, &ids)
}

// TestReleasesAfterRestart: a subscription whose server went away and
// came back (a read error, then go-redis reconnects and resubscribes)
// delivers notifications again.
func TestReleasesAfterRestart(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	s := redisstore.New(c, redisstore.WithPrefix(randomPrefix()), redisstore.WithPartitions(2))
	ctx := t.Context()
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	r := coordinator.Plan("restarted")
	var ids reqIDs
	notifiedAgain(t, s, sub, r, &ids)

	srv.Kill()
	// the server stays down a while, the fault itself: the subscription
	// meets the read error and backs off
	time.Sleep(100 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	notifiedAgain(t, s, sub, r, &ids)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestUnqueueFailure: an Unqueue Redis cannot serve is an error naming
// the waiter and the resource, never a silent drop.
func TestUnqueueFailure(t *testing.T) {
	b := newMiniBackend(t)
	s := redisstore.New(b.client, redisstore.WithPartitions(2)) // its own miniredis: nothing to clean
	ctx := t.Context()
	r := coordinator.Plan("gone")
	if err := s.Unqueue(ctx, r, "waiter-1"); err != nil {
		t.Fatalf("Unqueue of a waiter not queued: %v", err)
	}
	b.mini.Close()
	err := s.Unqueue(ctx, r, "waiter-1")
	if err == nil {
		t.Fatal("Unqueue with Redis down: no error")
	}
	if msg := err.Error(); !strings.Contains(msg, "waiter-1") || !strings.Contains(msg, "plan/gone") {
		t.Fatalf("error %q does not name the waiter and the resource", msg)
	}
	// a store that never reached Redis fails at its first check
	fresh := redisstore.New(b.client, redisstore.WithPartitions(2))
	if err := fresh.Unqueue(ctx, r, "waiter-1"); err == nil {
		t.Fatal("Unqueue of a store that never reached Redis: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Unqueue(cancelled, r, "waiter-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unqueue with a cancelled ctx = %v, want context.Canceled", err)
	}
}
