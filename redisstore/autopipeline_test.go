package redisstore_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestAutoPipelineRecovers (issue 15): with every script call sent
// through the AutoPipeliner, what the store recovers from on a plain
// client it recovers from in a pipelined batch too: a SCRIPT FLUSH in the
// middle of concurrent pairs (each call's NOSCRIPT answered by its own
// EVAL), a request id sent twice (the second call repeats the first's
// reply), the release notifications and a waiter they wake, and a Redis
// restart without persistence (network errors, then working calls,
// tokens that still grow and notifications again).
func TestAutoPipelineRecovers(t *testing.T) {
	b := newRealBackend(t)
	ctx := t.Context()
	s := redisstore.New(quickClient(t, b.srv.Addr, 0), redisstore.WithPrefix(randomPrefix()), redisstore.PipelineAlwaysForTest())
	if !s.PipelinedForTest() {
		t.Fatal("the store does not pipeline")
	}

	t.Run("script flush under load", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		flushed := make(chan struct{})
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					if i == 100 && g == 0 {
						if err := b.client.ScriptFlush(ctx).Err(); err != nil {
							errs <- err
							return
						}
						close(flushed)
					}
					r := coordinator.Plan("flush-" + strconv.Itoa(g))
					owner, id := "w"+strconv.Itoa(g), strconv.Itoa(g)+"-"+strconv.Itoa(i)
					if _, err := s.Acquire(ctx, request(r, owner, "a"+id, time.Minute)); err != nil {
						errs <- err
						return
					}
					if _, err := s.Release(ctx, request(r, owner, "r"+id, 0)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("a pair around SCRIPT FLUSH: %v", err)
		}
		select {
		case <-flushed:
		default:
			t.Fatal("the script cache was not flushed")
		}
	})

	t.Run("request id sent twice", func(t *testing.T) {
		r := coordinator.Plan("twice")
		req := request(r, "w1", "same-acquire", time.Minute)
		first := lease(t)(s.Acquire(ctx, req))
		again := lease(t)(s.Acquire(ctx, req))
		if again.Token != first.Token || again.Count != 1 {
			t.Fatalf("the acquisition repeated: %+v, want the first's lease %+v (count 1)", again, first)
		}
		rel := request(r, "w1", "same-release", 0)
		lease(t)(s.Release(ctx, rel))
		if l, err := s.Release(ctx, rel); err != nil || l.Token != first.Token {
			t.Fatalf("the release repeated: %+v, %v; want the first release's reply", l, err)
		}
	})

	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	var ids reqIDs
	t.Run("release notification", func(t *testing.T) {
		notifiedAgain(t, s, sub, coordinator.Plan("notified"), &ids)
	})

	t.Run("waiter woken by the release", func(t *testing.T) {
		holder, waiter := coordinator.New(s), coordinator.New(s)
		t.Cleanup(func() {
			_ = holder.Close(context.Background())
			_ = waiter.Close(context.Background())
		})
		r := coordinator.Plan("woken")
		if _, err := holder.Acquire(ctx, r, "w1", coordinator.TTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := waiter.Acquire(ctx, r, "w2", coordinator.Wait(time.Minute), coordinator.TTL(time.Minute))
			got <- err
		}()
		testutil.Eventually(t, 10*time.Second, "the waiter to queue", func() bool {
			n, err := b.client.Exists(ctx, s.Layout().QueueKey(r)).Result()
			return err == nil && n == 1
		})
		if _, err := holder.Release(ctx, r, "w1"); err != nil {
			t.Fatal(err)
		}
		// the holder's TTL is an hour: only the notification wakes it in time
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("the waiter: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the waiter was not woken by the release")
		}
	})

	t.Run("restart", func(t *testing.T) {
		r := coordinator.Plan("restart")
		old := lease(t)(s.Acquire(ctx, request(r, "w1", "before", time.Minute)))
		b.srv.Kill()
		if _, err := s.Acquire(ctx, request(coordinator.Plan("down"), "w1", "down", time.Minute)); !isNetworkError(err) {
			t.Fatalf("acquire while Redis is down: %v, want a network error", err)
		}
		restartedWorks(t, b, s, r, old)
		// the subscription came back too
		notifiedAgain(t, s, sub, coordinator.Plan("notified-after"), &ids)
	})
}
