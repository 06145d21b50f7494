package benchmarks_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// The expiry-event case (issue 14): leases left to expire, each watched.
const (
	// expiryWorkers leases expire at a time, each on a resource of its
	// own with a watcher of its own
	expiryWorkers = 4
	// expiryTTL is the TTL of the leases left to expire
	expiryTTL = 200 * time.Millisecond
	// expiryJitter bounds the random pause before each lease is taken:
	// more than a sweep period (250 ms ± a quarter), so that expiries
	// fall anywhere between two sweeps
	expiryJitter = 320 * time.Millisecond
	// expiryTimeout bounds the wait for one expired event
	expiryTimeout = 10 * time.Second
)

// BenchmarkExpiryEvent measures how long after a lease expires its
// watcher gets the expired event. One coordinator takes a lease with
// expiryTTL and leaves it; another (its own store, as another process)
// watches the resource with coordinator.Watch, and its store's sweeps
// (redisstore's expiry index, every 250 ms) turn the expiry into the
// event. Each watch has had an event before the timer starts. One op is
// one lease, from the time it expires (when the acquire
// was sent plus the Remaining it reported) to the event's arrival;
// expiryWorkers leases are in flight at a time, each taken after a random
// pause. It reports the p50 and p99 of that latency and the TTL.
func BenchmarkExpiryEvent(b *testing.B) {
	b.Run("lib=lockcoord", benchExpiryEvent)
}

func benchExpiryEvent(b *testing.B) {
	c, _ := newClient(b)
	flush(b, c)
	prefix := randomPrefix()
	holder := coordinator.New(redisstore.New(c, redisstore.WithPrefix(prefix)))
	watcher := coordinator.New(redisstore.New(c, redisstore.WithPrefix(prefix)))
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		_ = holder.Close(context.Background())
		_ = watcher.Close(context.Background())
	})
	// the watches start before the timer; they end (their channels are
	// closed) when ctx is cancelled, before the coordinators close
	watches := make([]<-chan coordinator.Event, expiryWorkers)
	for w := range watches {
		ch, err := watcher.Watch(ctx, expiryResource(w))
		if err != nil {
			cancel()
			b.Fatalf("watch: %v", err)
		}
		watches[w] = ch
	}
	defer func() {
		cancel()
		for _, ch := range watches {
			for range ch { // drained until closed
			}
		}
	}()
	for w, ch := range watches {
		if err := warmWatch(ctx, holder, ch, expiryResource(w)); err != nil {
			b.Fatal(err)
		}
	}
	lat := newLatencies(expiryWorkers, b.N)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	b.ResetTimer()
	for w := range expiryWorkers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < b.N && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				d, err := expireOne(ctx, holder, watches[w], expiryResource(w), "holder-"+strconv.Itoa(i))
				if err != nil {
					errOnce.Do(func() { failure = err; cancel() })
					return
				}
				lat.add(w, d)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if failure != nil {
		b.Fatal(failure)
	}
	all := slices.Concat(lat.per...)
	b.ReportMetric(millis(percentile(all, 50)), "event-p50-ms")
	b.ReportMetric(millis(percentile(all, 99)), "event-p99-ms")
	b.ReportMetric(millis(expiryTTL), "ttl-ms")
}

func expiryResource(w int) coordinator.Resource {
	return coordinator.Resource{Type: "bench", ID: "expiry-" + strconv.Itoa(w)}
}

// warmWatch takes r and releases it, and waits for the acquired event on
// events: then the store reads r's partition. (A watch of a partition
// its store's reader does not read yet joins its next read, which can
// wait for the reader's XREAD BLOCK, up to a second; the case measures
// watches that run.)
func warmWatch(ctx context.Context, co *coordinator.Coordinator, events <-chan coordinator.Event, r coordinator.Resource) error {
	l, err := co.Acquire(ctx, r, "warm-up", coordinator.TTL(expiryTimeout))
	if err != nil {
		return fmt.Errorf("acquire %s: %w", r, err)
	}
	if _, err := co.Release(ctx, r, "warm-up"); err != nil {
		return fmt.Errorf("release %s: %w", r, err)
	}
	t := time.NewTimer(expiryTimeout)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("the watch ended")
			}
			if ev.Kind == coordinator.EventAcquired && ev.Lease.Token == l.Token {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no acquired event for %s within %v", r, expiryTimeout)
		}
	}
}

// expireOne pauses at random, takes r for owner with expiryTTL, and
// returns how long after the lease's expiry its expired event arrived on
// events.
func expireOne(ctx context.Context, co *coordinator.Coordinator, events <-chan coordinator.Event, r coordinator.Resource, owner string) (time.Duration, error) {
	if err := sleepCtx(ctx, rand.N(expiryJitter)); err != nil {
		return 0, err
	}
	sent := time.Now()
	l, err := co.Acquire(ctx, r, owner, coordinator.TTL(expiryTTL))
	if err != nil {
		return 0, fmt.Errorf("acquire %s: %w", r, err)
	}
	expiry := sent.Add(l.Remaining)
	if l.Remaining <= 0 {
		expiry = l.ExpiresAt
	}
	t := time.NewTimer(expiryTimeout)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-events:
			switch {
			case !ok:
				return 0, errors.New("the watch ended")
			case ev.Kind == coordinator.EventGap:
				return 0, fmt.Errorf("watch of %s: a gap: %s", r, ev.Gap)
			case ev.Kind == coordinator.EventExpired && ev.Lease.Token == l.Token:
				return time.Since(expiry), nil
			}
		case <-t.C:
			return 0, fmt.Errorf("no expired event for %s (token %d) within %v of its expiry", r, l.Token, expiryTimeout)
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
