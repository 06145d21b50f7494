package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

func nextEvent(t *testing.T, ch <-chan coordinator.Event) coordinator.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event came")
	}
	return coordinator.Event{}
}

func TestWatchOutboxOff(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	s := redisstore.New(client, redisstore.WithOutbox(false))
	if _, err := s.Watch(t.Context(), coordinator.Plan("1")); !errors.Is(err, coordinator.ErrUnsupported) {
		t.Fatalf("Watch with the outbox off: %v", err)
	}
	if _, err := s.Watch(t.Context(), coordinator.Resource{Type: "plan", ID: "\x01"}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Watch of a bad id: %v", err)
	}
	if _, err := redisstore.New(client, redisstore.WithPrefix("")).Watch(t.Context(), coordinator.Plan("1")); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Watch of a misconfigured store: %v", err)
	}
	mr.Close()
	if _, err := redisstore.New(client).Watch(t.Context(), coordinator.Plan("1")); err == nil {
		t.Fatal("Watch without Redis")
	}
}

// A stream deleted under a watcher (Redis lost its data) and an entry no
// script wrote are gaps; the watch goes on with what comes next.
func TestWatchStreamLost(t *testing.T) {
	for name, client := range map[string]redis.UniversalClient{
		"miniredis": redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()}),
		"redis":     testredis.Start(t).Client(t),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := redisharness.NewStore(t, client)
			c := coordinator.New(s)
			defer c.Close(ctx)
			ch, err := c.WatchType(ctx, "job")
			if err != nil {
				t.Fatal(err)
			}
			r := coordinator.Resource{Type: "job", ID: "1"}
			if _, err := c.Acquire(ctx, r, "w1"); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, ch); ev.Kind != coordinator.EventAcquired {
				t.Fatalf("event %+v", ev)
			}
			stream := s.Layout().StreamKey(s.Layout().Partition(r))
			if err := client.Del(ctx, stream).Err(); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, ch); ev.Kind != coordinator.EventGap || ev.Lease.Resource.Type != "job" {
				t.Fatalf("event %+v, want a gap", ev)
			}
			if err := client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"junk", "1"}}).Err(); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, ch); ev.Kind != coordinator.EventGap {
				t.Fatalf("event %+v, want a gap for the unreadable entry", ev)
			}
			if _, err := c.Release(ctx, r, "w1"); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, ch); ev.Kind != coordinator.EventReleased {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// A reader that Redis refuses retries, and delivers what came meanwhile
// once Redis answers; a watch that cannot read the streams' ends fails.
func TestWatchRetries(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := t.Context()
	s := redisstore.New(client)
	c := coordinator.New(s)
	defer c.Close(ctx)
	if _, err := c.Inspect(ctx, coordinator.Plan("1")); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatal(err) // the store's checks of Redis are done
	}
	mr.SetError("ERR the test refuses")
	if _, err := c.Watch(ctx, coordinator.Plan("1")); err == nil || !strings.Contains(err.Error(), "last ids") {
		t.Fatalf("Watch while Redis refuses: %v", err)
	}
	mr.SetError("")
	wctx, cancel := context.WithCancel(ctx)
	ch, err := c.Watch(wctx, coordinator.Plan("1"))
	if err != nil {
		t.Fatal(err)
	}
	mr.SetError("ERR the test refuses")
	testutil.Eventually(t, 15*time.Second, "a failed read", func() bool { return s.WatchFailuresForTest() > 0 })
	mr.SetError("")
	if _, err := c.Acquire(ctx, coordinator.Plan("1"), "w1"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.Kind != coordinator.EventAcquired {
		t.Fatalf("event %+v", ev)
	}
	mr.SetError("ERR the test refuses")
	cancel()
	for range ch { //nolint:revive // closed once the reader stopped
	}
	mr.SetError("")
}
