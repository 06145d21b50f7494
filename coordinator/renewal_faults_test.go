package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// faultyStore injects renewal and acquisition faults into a real store.
type faultyStore struct {
	coordinator.Store
	renewFails   atomic.Int32 // renewals left to fail with errNetwork
	renewBlocks  atomic.Bool  // renewals hang until their context ends
	acquireFails atomic.Int32 // acquisitions, after the first, left to fail
	acquires     atomic.Int32
}

var errNetwork = errors.New("injected: connection reset")

func (s *faultyStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if s.renewBlocks.Load() {
		<-ctx.Done()
		return coordinator.Lease{}, ctx.Err()
	}
	if s.renewFails.Add(-1) >= 0 {
		return coordinator.Lease{}, errNetwork
	}
	return s.Store.Renew(ctx, req)
}

func (s *faultyStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if s.acquires.Add(1) > 1 && s.acquireFails.Add(-1) >= 0 {
		return coordinator.Lease{}, errNetwork
	}
	return s.Store.Acquire(ctx, req)
}

func TestRenewalRetriesTransientFailures(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	fs := &faultyStore{Store: e.store}
	fs.renewFails.Store(2)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	c := coordinator.New(fs, coordinator.WithMetrics(reg), coordinator.WithLogger(zerolog.New(&logs)),
		coordinator.WithRenewInterval(50*time.Millisecond), coordinator.WithSafetyMargin(100*time.Millisecond))
	defer c.Close(ctx)
	r := coordinator.Plan("flaky")
	err := c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
		testutil.Eventually(t, 10*time.Second, "a renewal after the failures", func() bool { return count(e.events(t, r), "renewed") >= 1 })
		return context.Cause(ctx)
	}, coordinator.TTL(2*time.Second))
	if err != nil {
		t.Fatalf("Hold through two failed renewals: %v", err)
	}
	if got := promtest.ToFloat64(findGauge(t, reg, "lockcoord_renew_failures_total")); got != 2 {
		t.Errorf("renew failures = %v, want 2", got)
	}
	if got := promtest.ToFloat64(findGauge(t, reg, "lockcoord_leases_lost_total")); got != 0 {
		t.Errorf("leases lost = %v, want 0", got)
	}
	if !strings.Contains(logs.String(), "lease renewal failed, retrying") || !strings.Contains(logs.String(), `"resource":"plan/flaky"`) {
		t.Errorf("retries not logged with the resource: %s", logs.String())
	}
}

func TestRenewalThatNeverAnswersIsALoss(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	fs := &faultyStore{Store: e.store}
	fs.renewBlocks.Store(true)
	c := coordinator.New(fs)
	defer c.Close(ctx)
	start := time.Now()
	err := c.Hold(ctx, coordinator.Plan("hang"), "w1", func(ctx context.Context, l coordinator.Lease) error {
		<-ctx.Done()
		return nil
	}, coordinator.TTL(300*time.Millisecond))
	if !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, coordinator.ErrRenewTimeout) {
		t.Fatalf("Hold = %v, want a loss by timeout", err)
	}
	if strings.Contains(err.Error(), "%!") {
		t.Fatalf("malformed message: %v", err)
	}
	t.Logf("loss declared after %v (TTL 300ms, margin 30ms)", time.Since(start))

	// a renewal that keeps failing until the deadline names the last error
	fs.renewBlocks.Store(false)
	fs.renewFails.Store(1 << 20)
	err = c.Hold(ctx, coordinator.Plan("down"), "w1", func(ctx context.Context, l coordinator.Lease) error {
		<-ctx.Done()
		return nil
	}, coordinator.TTL(300*time.Millisecond))
	if !errors.Is(err, coordinator.ErrRenewTimeout) || !errors.Is(err, errNetwork) {
		t.Fatalf("Hold = %v, want a loss by timeout naming the last error", err)
	}
}

func TestRenewTimingOptions(t *testing.T) {
	e := newMiniEnv(t)
	for _, opt := range []coordinator.Option{coordinator.WithRenewInterval(-1), coordinator.WithSafetyMargin(-time.Second)} {
		c := coordinator.New(e.store, opt)
		if _, err := c.Acquire(t.Context(), coordinator.Plan("x"), "w"); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("negative option: %v", err)
		}
	}
	// an interval or margin too large for the TTL falls back to the defaults
	c := coordinator.New(e.store, coordinator.WithRenewInterval(time.Hour), coordinator.WithSafetyMargin(time.Hour))
	defer c.Close(context.Background())
	r := coordinator.Plan("timing")
	err := c.Hold(t.Context(), r, "w1", func(ctx context.Context, l coordinator.Lease) error {
		testutil.Eventually(t, 10*time.Second, "a renewal at TTL/3", func() bool { return count(e.events(t, r), "renewed") >= 1 })
		return nil
	}, coordinator.TTL(600*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
}

func TestWaitStopsOnAnotherError(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("w-err")
	if _, err := e.c.Acquire(ctx, r, "holder"); err != nil {
		t.Fatal(err)
	}
	fs := &faultyStore{Store: e.store}
	fs.acquireFails.Store(1)
	c := coordinator.New(fs) // no Notifier: polls
	defer c.Close(ctx)
	if _, err := c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute)); !errors.Is(err, errNetwork) {
		t.Fatalf("wait ended with %v, want the store's error", err)
	}
}

// brokenNotifier fails to subscribe: waiters fall back to polling.
type brokenNotifier struct{ coordinator.Store }

func (brokenNotifier) Releases(context.Context) (coordinator.Subscription, error) {
	return nil, errNetwork
}

func TestWaitPollsWhenSubscribingFails(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("no-sub")
	if _, err := e.c.Acquire(ctx, r, "holder", coordinator.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	c := coordinator.New(brokenNotifier{e.store}, coordinator.WithLogger(zerolog.New(&logs)))
	defer c.Close(ctx)
	go func() {
		// the release comes once the waiter waits (polling)
		_ = testutil.Poll(ctx, time.Millisecond, func() error {
			if c.WaitersForTest(r) == 0 {
				return testutil.ErrNotYet
			}
			return nil
		})
		_, _ = e.c.Release(context.Background(), r, "holder")
	}()
	if _, err := c.Acquire(ctx, r, "waiter", coordinator.Wait(time.Minute)); err != nil {
		t.Fatalf("polling waiter: %v", err)
	}
	if !strings.Contains(logs.String(), "release notifications unavailable") {
		t.Errorf("the fallback was not logged: %s", logs.String())
	}
}

func TestMetricsResultLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newMiniEnv(t, coordinator.WithMetrics(reg))
	ctx := t.Context()
	r := coordinator.Plan("labels")
	_, _ = e.c.Renew(ctx, r, "w1") // expired
	if _, err := e.c.Acquire(ctx, r, "w2"); err != nil {
		t.Fatal(err)
	}
	_, _ = e.c.Renew(ctx, r, "w1")   // not held
	_, _ = e.c.Release(ctx, r, "w1") // not held
	e.mr.SetError("injected")
	_, _ = e.c.Renew(ctx, r, "w2") // error
	e.mr.SetError("")
	n, err := promtest.GatherAndCount(reg, "lockcoord_renew_duration_seconds")
	if err != nil || n != 3 {
		t.Fatalf("renew series = %d, %v; want expired, not_held, error", n, err)
	}
}
