package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestHoldRenewsThroughLongPhase(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	e.clock(t)
	r := coordinator.Plan("long")
	const ttl = 400 * time.Millisecond
	err := e.c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
		// a phase three TTLs long: without renewal the key would expire
		select {
		case <-time.After(3 * ttl):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		got, err := e.c.Inspect(ctx, r)
		if err != nil || got.Token != l.Token {
			t.Errorf("lease after a long phase: %+v, %v", got, err)
		}
		return nil
	}, coordinator.TTL(ttl))
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	ev := e.events(t, r)
	if n := count(ev, "renewed"); n < 5 {
		t.Errorf("%d renewals over 3 TTLs, want at least 5 (every TTL/3): %v", n, ev)
	}
	if ev[len(ev)-1] != "released" {
		t.Errorf("last event %q, want released", ev[len(ev)-1])
	}
	if _, err := e.c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Errorf("lease left after Hold: %v", err)
	}
	if n := len(e.c.Renewing()); n != 0 {
		t.Errorf("%d keep-alives left after Hold", n)
	}
}

func TestHoldSignalsLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steal  func(e *miniEnv, r coordinator.Resource)
		reason error
	}{
		{"key deleted", func(e *miniEnv, r coordinator.Resource) { e.mr.Del(e.store.Layout().LeaseKey(r)) }, coordinator.ErrExpired},
		{"taken by another", func(e *miniEnv, r coordinator.Resource) {
			e.mr.Del(e.store.Layout().LeaseKey(r))
			if _, err := coordinator.New(e.store).Acquire(context.Background(), r, "thief"); err != nil {
				panic(err)
			}
		}, coordinator.ErrNotHeld},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMiniEnv(t)
			ctx := t.Context()
			r := coordinator.Plan("lost")
			const ttl = 300 * time.Millisecond
			fnErr := errors.New("phase aborted")
			var noticed time.Duration
			err := e.c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
				tc.steal(e, r)
				stolen := time.Now()
				<-ctx.Done()
				noticed = time.Since(stolen)
				cause := context.Cause(ctx)
				var lost *coordinator.LostError
				if !errors.Is(cause, coordinator.ErrLeaseLost) || !errors.As(cause, &lost) ||
					!errors.Is(cause, tc.reason) || lost.Token != l.Token || lost.Owner != "w1" {
					t.Errorf("cause = %v, want a *LostError with reason %v", cause, tc.reason)
				}
				return fnErr
			}, coordinator.TTL(ttl))
			if !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, fnErr) {
				t.Fatalf("Hold = %v, want fn's error joined with ErrLeaseLost", err)
			}
			// one renewal interval (TTL/3) plus scheduling slack
			if noticed > 2*ttl {
				t.Errorf("loss noticed after %v, want within about one renewal interval (%v)", noticed, ttl/3)
			}
			t.Logf("loss noticed %v after the steal", noticed)
		})
	}
}

// TestLossSignalledBeforeExpiryWhenRedisUnreachable cuts the network to a
// real Redis while a lease is held: the holder must learn of the loss while
// the lease still lives in Redis, so before anyone else can take it.
func TestLossSignalledBeforeExpiryWhenRedisUnreachable(t *testing.T) {
	srv := testredis.Start(t)
	proxy := testredis.NewProxy(t, srv.Addr)
	direct := srv.Client(t)
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = viaProxy.Close() })
	store := redisstore.New(viaProxy)
	c := coordinator.New(store)
	ctx := t.Context()
	r := coordinator.Plan("partitioned")
	const ttl = time.Second

	var cut time.Time
	var pttlAtSignal time.Duration
	err := c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
		// a renewal first
		testutil.Eventually(t, 10*time.Second, "a renewal", func() bool {
			got, err := direct.HGet(ctx, store.Layout().LeaseKey(r), "expires_at").Int64()
			return err == nil && got > l.ExpiresAt.UnixMilli()
		})
		proxy.Blackhole()
		cut = time.Now()
		<-ctx.Done()
		var err error
		pttlAtSignal, err = direct.PTTL(context.Background(), store.Layout().LeaseKey(r)).Result()
		if err != nil {
			t.Errorf("PTTL: %v", err)
		}
		if !errors.Is(context.Cause(ctx), coordinator.ErrRenewTimeout) {
			t.Errorf("cause %v, want ErrRenewTimeout", context.Cause(ctx))
		}
		proxy.Heal() // let the final release through
		return nil
	}, coordinator.TTL(ttl))
	if !errors.Is(err, coordinator.ErrLeaseLost) {
		t.Fatalf("Hold = %v, want ErrLeaseLost", err)
	}
	if pttlAtSignal <= 0 {
		t.Fatalf("loss signalled when the key had PTTL %v: another worker could already hold it", pttlAtSignal)
	}
	t.Logf("loss signalled %v after the cut, with %v of the lease left in Redis", time.Since(cut), pttlAtSignal)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestKeepAliveStopAndContext(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Project("ka")
	l, err := e.c.Acquire(ctx, r, "w1", coordinator.TTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ka := e.c.KeepAlive(ctx, l)
	testutil.Eventually(t, 5*time.Second, "a renewal", func() bool { return !ka.Lease().ExpiresAt.Equal(l.ExpiresAt) })
	if got := ka.Lease(); !got.ExpiresAt.After(l.ExpiresAt) || got.Token != l.Token {
		t.Fatalf("Lease() = %+v, want a renewal of %+v", got, l)
	}
	ka.Stop()
	ka.Stop() // idempotent
	select {
	case <-ka.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if ka.Err() != nil {
		t.Fatalf("Err after Stop = %v", ka.Err())
	}
	if len(e.c.Renewing()) != 0 {
		t.Fatalf("still renewing after Stop")
	}
	if _, err := e.c.Inspect(ctx, r); err != nil {
		t.Fatalf("Stop released the lease: %v", err)
	}

	kctx, cancel := context.WithCancelCause(ctx)
	ka = e.c.KeepAlive(kctx, l)
	stopErr := errors.New("shutting down")
	cancel(stopErr)
	<-ka.Done()
	if !errors.Is(ka.Err(), stopErr) {
		t.Fatalf("Err after the context ended = %v", ka.Err())
	}

	bad := e.c.KeepAlive(ctx, coordinator.Lease{Resource: coordinator.Plan(""), Owner: "w1"})
	<-bad.Done()
	if !errors.Is(bad.Err(), coordinator.ErrInvalid) || bad.Lease() != (coordinator.Lease{}) {
		t.Fatalf("KeepAlive of an invalid lease: %v", bad.Err())
	}
}

func TestKeepAliveOfALeaseFromInspect(t *testing.T) {
	e := newMiniEnv(t, coordinator.WithTTL("job", 300*time.Millisecond))
	ctx := t.Context()
	r := coordinator.Resource{Type: "job", ID: "x"}
	if _, err := e.c.Acquire(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	l, err := e.c.Inspect(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	ka := e.c.KeepAlive(ctx, l)
	defer ka.Stop()
	testutil.Eventually(t, 5*time.Second, "a renewal", func() bool { return count(e.events(t, r), "renewed") > 0 })
	if count(e.events(t, r), "renewed") == 0 {
		t.Fatal("no renewal of a lease from Inspect")
	}
}

func TestKeepAliveNeverRenewsALaterLease(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("later")
	old, err := e.c.Acquire(ctx, r, "w1", coordinator.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// the old lease expires and the same owner takes the resource again
	// through another coordinator: the old keep-alive must report a loss
	e.mr.Del(e.store.Layout().LeaseKey(r))
	other := coordinator.New(e.store)
	if _, err := other.Acquire(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	old2, err := e.c.Acquire(ctx, coordinator.Plan("unrelated"), "w1", coordinator.TTL(60*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_ = old2
	ka := e.c.KeepAlive(ctx, coordinator.Lease{Resource: r, Owner: "w1", Token: old.Token, Count: 1, ExpiresAt: old.ExpiresAt})
	<-ka.Done()
	var le *coordinator.LeaseError
	if !errors.Is(ka.Err(), coordinator.ErrLeaseLost) || !errors.As(ka.Err(), &le) || le.HolderToken == old.Token || le.HolderToken == 0 {
		t.Fatalf("Err = %v, want a loss naming the later token", ka.Err())
	}
	if !strings.Contains(ka.Err().Error(), "token") {
		t.Fatalf("message %q", ka.Err())
	}
}

func TestReentrantHoldsShareOneKeepAlive(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("nested")
	err := e.c.Hold(ctx, r, "w1", func(ctx context.Context, outer coordinator.Lease) error {
		return e.c.Hold(ctx, r, "w1", func(ctx context.Context, inner coordinator.Lease) error {
			if inner.Count != 2 || inner.Token != outer.Token {
				t.Errorf("inner hold %+v of outer %+v", inner, outer)
			}
			if n := len(e.c.Renewing()); n != 1 {
				t.Errorf("%d keep-alives for one (resource, owner), want 1", n)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.c.Renewing()); n != 0 {
		t.Fatalf("%d keep-alives after the holds", n)
	}
	// a Release that drops the last hold stops the keep-alive
	l, err := e.c.Acquire(ctx, r, "w1")
	if err != nil {
		t.Fatal(err)
	}
	ka := e.c.KeepAlive(ctx, l)
	if _, err := e.c.Release(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	<-ka.Done()
	if ka.Err() != nil {
		t.Fatalf("keep-alive of a released lease ended with %v", ka.Err())
	}
}

func TestCloseStopsKeepAlivesAndReleases(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	var kas []*coordinator.KeepAlive
	for _, r := range []coordinator.Resource{coordinator.Plan("a"), coordinator.Project("b")} {
		l, err := e.c.Acquire(ctx, r, "w1")
		if err != nil {
			t.Fatal(err)
		}
		kas = append(kas, e.c.KeepAlive(ctx, l))
	}
	if err := e.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ka := range kas {
		<-ka.Done()
		if !errors.Is(ka.Err(), coordinator.ErrClosed) {
			t.Errorf("keep-alive ended by Close with %v, want ErrClosed", ka.Err())
		}
	}
	if keys := e.mr.Keys(); len(keys) == 0 {
		t.Fatal("no keys at all")
	} else {
		for _, k := range keys {
			if strings.Contains(k, ":lock:") {
				t.Errorf("lease key %s left after Close", k)
			}
		}
	}
	ka := e.c.KeepAlive(ctx, coordinator.Lease{Resource: coordinator.Plan("a"), Owner: "w1"})
	<-ka.Done()
	if !errors.Is(ka.Err(), coordinator.ErrClosed) {
		t.Fatalf("KeepAlive after Close: %v", ka.Err())
	}
	if err := e.c.Hold(ctx, coordinator.Plan("a"), "w1", func(context.Context, coordinator.Lease) error { return nil }); !errors.Is(err, coordinator.ErrClosed) {
		t.Fatalf("Hold after Close: %v", err)
	}
}

func TestHoldReleaseFindsLoss(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("quiet")
	// a loss between renewals that only the final release sees
	err := e.c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
		e.mr.Del(e.store.Layout().LeaseKey(r))
		return nil
	}, coordinator.TTL(time.Hour))
	if !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Hold = %v, want ErrLeaseLost found by the release", err)
	}
	if err := e.c.Hold(ctx, r, "w1", nil); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Hold with a nil fn: %v", err)
	}
	e.c.Close(ctx)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newMiniEnv(t, coordinator.WithMetrics(reg))
	ctx := t.Context()
	r := coordinator.Plan("m")
	if _, err := e.c.Acquire(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Acquire(ctx, r, "w2"); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatal(err)
	}
	if _, err := e.c.Renew(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	if got := promtest.ToFloat64(findGauge(t, reg, "lockcoord_leases_held")); got != 1 {
		t.Errorf("leases_held = %v, want 1", got)
	}
	// a second coordinator on the same registry shares the collectors
	c2 := coordinator.New(e.store, coordinator.WithMetrics(reg))
	if _, err := c2.Acquire(ctx, coordinator.Plan("m2"), "w3"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Release(ctx, r, "w1"); err != nil {
		t.Fatal(err)
	}
	// a lost lease: Redis answers the first renewal (at TTL/3) with
	// ErrExpired, a renewal failure; the TTL leaves room for a late first
	// renewal on a loaded machine, which would otherwise run out the
	// deadline and lose the lease with no failure counted
	l, err := e.c.Acquire(ctx, coordinator.Plan("m3"), "w1", coordinator.TTL(600*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ka := e.c.KeepAlive(ctx, l)
	e.mr.Del(e.store.Layout().LeaseKey(l.Resource))
	<-ka.Done()
	if err := c2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		"lockcoord_conflicts_total":      1,
		"lockcoord_leases_lost_total":    1,
		"lockcoord_renew_failures_total": 1,
	}
	for name, v := range want {
		if got := promtest.ToFloat64(findGauge(t, reg, name)); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	n, err := promtest.GatherAndCount(reg, "lockcoord_acquire_duration_seconds")
	if err != nil || n != 2 { // two result series: ok and conflict
		t.Errorf("acquire histogram series = %d, %v; want 2", n, err)
	}
	if got := promtest.ToFloat64(findGauge(t, reg, "lockcoord_leases_held")); got != 0 {
		t.Errorf("leases_held after releases, loss and Close = %v, want 0", got)
	}
	// nothing is registered without the option
	if n, _ := promtest.GatherAndCount(prometheus.DefaultGatherer, "lockcoord_conflicts_total"); n != 0 {
		t.Errorf("default registry has lockcoord metrics")
	}
}

// findGauge returns the collector of a single-series metric.
func findGauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) == 1 {
				m := mf.GetMetric()[0]
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.UntypedValue, v)
				return
			}
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.UntypedValue, 0)
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func TestCloseCancelsRunningHolds(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	r := coordinator.Plan("shutdown")
	started := make(chan struct{})
	holdErr := make(chan error, 1)
	var cause error
	go func() {
		holdErr <- e.c.Hold(ctx, r, "w1", func(ctx context.Context, l coordinator.Lease) error {
			close(started)
			<-ctx.Done()
			cause = context.Cause(ctx)
			time.Sleep(10 * time.Millisecond) // winding down, still under the lease
			if !e.mr.Exists(e.store.Layout().LeaseKey(r)) {
				t.Error("lease released before the work returned")
			}
			return ctx.Err()
		})
	}()
	<-started
	if err := e.c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := <-holdErr
	if !errors.Is(cause, coordinator.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cause %v, Hold = %v", cause, err)
	}
	if e.mr.Exists(e.store.Layout().LeaseKey(r)) {
		t.Fatal("lease left after Close")
	}
}

func TestCloseGivesUpOnStuckHolds(t *testing.T) {
	e := newMiniEnv(t)
	ctx := t.Context()
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.c.Hold(ctx, coordinator.Plan("stuck"), "w1", func(context.Context, coordinator.Lease) error {
			close(started)
			<-release // ignores its context
			return nil
		})
	}()
	<-started
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := e.c.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stuck Hold: %v", err)
	}
	close(release)
	<-done
}
