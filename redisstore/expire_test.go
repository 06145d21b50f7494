package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// expireAll runs ExpireDue on every partition of s and returns the events
// it appended.
func expireAll(t *testing.T, s *redisstore.Store) int {
	t.Helper()
	n := 0
	for p := range s.Layout().Partitions() {
		n += must[int](t)(s.ExpireDue(t.Context(), p))
	}
	return n
}

// expiredEvents returns the "expired" entries of every stream of s.
func expiredEvents(t *testing.T, b *backend, s *redisstore.Store) []map[string]string {
	t.Helper()
	var out []map[string]string
	for p := range s.Layout().Partitions() {
		for _, e := range entries(t, b.client, s.Layout().StreamKey(p)) {
			if e["event"] == "expired" {
				out = append(out, e)
			}
		}
	}
	return out
}

// TestExpireDue: a hold whose expiry passed gives one "expired" event
// with the lease it was (a shared holder's alone, its mode and cap, the
// metadata of its last re-entry), once however often ExpireDue runs; a
// renewed hold and a released one give none.
func TestExpireDue(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		var ids reqIDs
		short := 30 * time.Millisecond
		x, sh, renewed, released := coordinator.Resource{Type: "job", ID: "x"}, coordinator.Resource{Type: "job", ID: "sh"},
			coordinator.Resource{Type: "job", ID: "renewed"}, coordinator.Resource{Type: "job", ID: "released"}
		lx := lease(t)(s.Acquire(ctx, request(x, "w1", ids.next(), short)))
		re := request(x, "w1", ids.next(), short)
		re.Meta = "phase 2 of 3"
		lease(t)(s.Acquire(ctx, re))
		ls := lease(t)(s.Acquire(ctx, sharedReq(sh, "w1", ids.next(), short, 3)))
		lease(t)(s.Acquire(ctx, sharedReq(sh, "w2", ids.next(), time.Hour, 3)))
		lease(t)(s.Acquire(ctx, request(renewed, "w1", ids.next(), short)))
		lease(t)(s.Renew(ctx, request(renewed, "w1", ids.next(), time.Hour)))
		lease(t)(s.Acquire(ctx, request(released, "w1", ids.next(), short)))
		lease(t)(s.Release(ctx, request(released, "w1", ids.next(), 0)))
		got := 0
		if err := testutil.Poll(ctx, 10*time.Millisecond, func() error {
			got += expireAll(t, s)
			if got < 2 {
				return testutil.ErrNotYet
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n := expireAll(t, s); got != 2 || n != 0 {
			t.Fatalf("ExpireDue appended %d events, then %d, want 2 then 0", got, n)
		}
		evs := expiredEvents(t, b, s)
		slices.SortFunc(evs, func(a, b map[string]string) int { return cmpStr(a["id"], b["id"]) })
		if len(evs) != 2 {
			t.Fatalf("expired events %v, want 2", evs)
		}
		ms := func(tm time.Time) string { return strconv.FormatInt(tm.UnixMilli(), 10) }
		want := []map[string]string{
			{"type": "job", "id": "sh", "owner": "w1", "token": strconv.FormatUint(ls.Token, 10), "count": "0",
				"acquired_at": ms(ls.AcquiredAt), "expires_at": ms(ls.ExpiresAt), "req": "", "mode": "shared", "cap": "3"},
			{"type": "job", "id": "x", "owner": "w1", "token": strconv.FormatUint(lx.Token, 10), "count": "0",
				"acquired_at": ms(lx.AcquiredAt), "req": "", "meta": "phase 2 of 3"},
		}
		for i, w := range want {
			for k, v := range w {
				if evs[i][k] != v {
					t.Errorf("expired event %v: %s = %q, want %q", evs[i], k, evs[i][k], v)
				}
			}
			at, _ := strconv.ParseInt(evs[i]["at"], 10, 64)
			exp, _ := strconv.ParseInt(evs[i]["expires_at"], 10, 64)
			if at < exp {
				t.Errorf("expired event %v appended before its expiry", evs[i])
			}
		}
		// what is left in the index: w2's shared hold and the renewed lease
		left := int64(0)
		for p := range s.Layout().Partitions() {
			left += must[int64](t)(b.client.ZCard(ctx, s.Layout().ExpiryKey(p)).Result())
		}
		if left != 2 {
			t.Fatalf("expiry index holds %d members, want 2", left)
		}
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestExpireDueFaults: a bad partition is ErrInvalid; with the outbox
// off nothing is indexed or appended; an index of another type is an
// error that changes nothing (and the next acquisition replaces it); a
// member no script wrote is dropped without an event; a stream that
// refuses the event leaves the member due; no Redis is an error.
func TestExpireDueFaults(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := b.newStore(t, redisstore.WithPartitions(1))
	for _, p := range []int{-1, 1} {
		if _, err := s.ExpireDue(ctx, p); !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("ExpireDue(%d): %v, want ErrInvalid", p, err)
		}
	}
	if _, err := redisstore.New(b.client, redisstore.WithPrefix("")).ExpireDue(ctx, 0); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("ExpireDue of a misconfigured store: %v, want ErrInvalid", err)
	}
	off := b.newStore(t, redisstore.WithOutbox(false), redisstore.WithPartitions(1))
	r := coordinator.Plan("1")
	lease(t)(off.Acquire(ctx, request(r, "w1", "a", time.Millisecond)))
	if n, err := off.ExpireDue(ctx, 0); n != 0 || err != nil {
		t.Fatalf("ExpireDue with the outbox off = %d, %v", n, err)
	}
	if b.mini.Exists(off.Layout().ExpiryKey(0)) {
		t.Fatal("the outbox off keeps an expiry index")
	}

	idx, stream := s.Layout().ExpiryKey(0), s.Layout().StreamKey(0)
	must[string](t)(b.client.Set(ctx, idx, "x", 0).Result())
	if _, err := s.ExpireDue(ctx, 0); !errors.Is(err, redisstore.ErrCorrupt) {
		t.Fatalf("ExpireDue of an index of another type: %v", err)
	}
	if v := must[string](t)(b.client.Get(ctx, idx).Result()); v != "x" {
		t.Fatalf("the index became %q", v)
	}
	// a watcher's store sweeps: the failure is counted, the watch goes on
	wctx, stop := context.WithCancel(ctx)
	if _, err := s.Watch(wctx, r); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a failed sweep", func() bool { return s.WatchFailuresForTest() > 0 })
	stop()
	lease(t)(s.Acquire(ctx, request(r, "w1", "b", time.Hour)))
	lease(t)(s.Release(ctx, request(r, "w1", "c", 0)))
	must[int64](t)(b.client.ZAdd(ctx, idx, redis.Z{Score: 0, Member: "junk"}).Result())
	if n := must[int](t)(s.ExpireDue(ctx, 0)); n != 0 || b.mini.Exists(idx) {
		t.Fatalf("ExpireDue of a junk member = %d, index left: %v", n, b.mini.Exists(idx))
	}

	// more due holds than one run takes: ExpireDue runs again
	defer redisstore.SetExpireBatchForTest(1)()
	for i := range 3 {
		must[int64](t)(b.client.ZAdd(ctx, idx, redis.Z{Score: 0, Member: strconv.Itoa(9+i) + "\n1\njob\n1\nw1\n\n"}).Result())
	}
	if n := must[int](t)(s.ExpireDue(ctx, 0)); n != 3 {
		t.Fatalf("ExpireDue of 3 due holds, one per run = %d", n)
	}

	must[int64](t)(b.client.Del(ctx, stream).Result())
	must[string](t)(b.client.Set(ctx, stream, "x", 0).Result())
	must[int64](t)(b.client.ZAdd(ctx, idx, redis.Z{Score: 0, Member: "7\n1\njob\n1\nw1\n\n"}).Result())
	if _, err := s.ExpireDue(ctx, 0); !errors.Is(err, redisstore.ErrOutbox) {
		t.Fatalf("ExpireDue into a stream of another type: %v, want ErrOutbox", err)
	}
	if n := must[int64](t)(b.client.ZCard(ctx, idx).Result()); n != 1 {
		t.Fatalf("a refused event left %d members, want 1", n)
	}
	gone := newMiniBackend(t)
	s = redisstore.New(gone.client)
	must[int](t)(s.ExpireDue(ctx, 0))
	gone.mini.Close()
	if _, err := s.ExpireDue(ctx, 0); !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("ExpireDue without Redis: %v, want ErrUnavailable", err)
	}
}

// TestExpiryEventLatency measures how long after their expiry the
// "expired" events of 50 leases reach a watcher on a real Redis (the
// store's sweep every 250 ms, jittered): logged, not asserted.
func TestExpiryEventLatency(t *testing.T) {
	b := newRealBackend(t)
	ctx := t.Context()
	s := b.newStore(t)
	c := coordinator.New(s)
	defer c.Close(context.Background())
	ch, err := c.WatchType(ctx, "lat")
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		r := coordinator.Resource{Type: "lat", ID: strconv.Itoa(i)}
		lease(t)(s.Acquire(ctx, request(r, "w1", "a", 200*time.Millisecond+time.Duration(i)*13*time.Millisecond)))
	}
	var lat []time.Duration
	for len(lat) < n {
		ev := nextEvent(t, ch)
		if ev.Kind == coordinator.EventExpired {
			lat = append(lat, time.Since(ev.Lease.ExpiresAt))
		}
	}
	slices.Sort(lat)
	t.Logf("expiry to event, %d expiries: p50 %v, p99 %v, max %v", n, lat[n/2], lat[n*99/100], lat[n-1])
}

// TestObserveVacancyOnExpiry: a leader whose lease expires is reported
// as a vacancy, on miniredis and a real Redis.
func TestObserveVacancyOnExpiry(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		c := coordinator.New(s)
		defer c.Close(context.Background())
		obs, err := c.Observe(ctx, "sched")
		if err != nil {
			t.Fatal(err)
		}
		if l := <-obs; l.Candidate != "" {
			t.Fatalf("first observation %+v, want a vacancy", l)
		}
		lease(t)(s.Acquire(ctx, request(coordinator.Election("sched"), "w1", "a", 50*time.Millisecond)))
		for _, want := range []string{"w1", ""} {
			select {
			case l := <-obs:
				if l.Candidate != want {
					t.Fatalf("observed %+v, want candidate %q", l, want)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no observation of %q", want)
			}
		}
	})
}

// TestExpiryIndexStaysBounded: nobody sweeps a partition (no watcher, no
// mirror sweep): an acquisition in it whose token ends in 0 (one in ten)
// drops the index members more than a minute overdue, whose events
// nobody waits for, and keeps those overdue by less (a sweep may still
// come) and the live ones; the others leave the index alone. Without
// that the index grew by one member per expired hold, for good.
func TestExpiryIndexStaysBounded(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		idx := s.Layout().ExpiryKey(0)
		now, err := b.client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		ms := now.UnixMilli()
		stale, recent := "1\n1\njob\nstale\nw0\n\n", "2\n1\njob\nrecent\nw0\n\n"
		if err := b.client.ZAdd(ctx, idx, redis.Z{Score: float64(ms - 61_000), Member: stale},
			redis.Z{Score: float64(ms - 1_000), Member: recent}).Err(); err != nil {
			t.Fatal(err)
		}
		var ids reqIDs
		for i := range 500 {
			l := lease(t)(s.Acquire(ctx, request(coordinator.Plan("bounded"+strconv.Itoa(i)), "w1", ids.next(), time.Minute)))
			members, err := b.client.ZRange(ctx, idx, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			pruned := l.Token%10 == 0
			want := i + 2 // the holds taken, and recent
			if !pruned {
				want++ // and stale
			}
			if len(members) != want || !slices.Contains(members, recent) || slices.Contains(members, stale) != !pruned {
				t.Fatalf("index after acquisition %d (token %d): %q; want the recent member and the new holds', the stale one only before a token ending in 0",
					i, l.Token, members)
			}
			if pruned {
				return
			}
		}
		t.Fatal("500 acquisitions, no token ending in 0")
	})
}
