package redisstore_test

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// eventFields are the fields of every outbox entry; a forced one has
// forcedFields (the operator, by).
var (
	eventFields  = []string{"acquired_at", "at", "count", "event", "expires_at", "id", "owner", "req", "token", "type"}
	forcedFields = []string{"acquired_at", "at", "by", "count", "event", "expires_at", "id", "owner", "req", "token", "type"}
)

// outbox follows one partition stream and checks that each operation
// wrote exactly the entries it should.
type outbox struct {
	t    *testing.T
	b    *backend
	key  string
	seen int
}

// next returns the one entry written since the last call, failing the
// test when there is none or more than one.
func (o *outbox) next(op string) map[string]string {
	o.t.Helper()
	all := entries(o.t, o.b.client, o.key)
	if len(all) != o.seen+1 {
		o.t.Fatalf("%s: stream %s has %d new entries, want 1: %v", op, o.key, len(all)-o.seen, all[o.seen:])
	}
	o.seen++
	e := all[len(all)-1]
	want := eventFields
	if e["event"] == "forced" {
		want = forcedFields
	}
	if got := slices.Sorted(maps.Keys(e)); !slices.Equal(got, want) {
		o.t.Fatalf("%s: event fields %v, want %v", op, got, want)
	}
	return e
}

// none checks that nothing was written since the last call.
func (o *outbox) none(op string) {
	o.t.Helper()
	if n := len(entries(o.t, o.b.client, o.key)); n != o.seen {
		o.t.Fatalf("%s wrote %d events, want none", op, n-o.seen)
	}
}

func ms(tm time.Time) string { return strconv.FormatInt(tm.UnixMilli(), 10) }

func msAt(t *testing.T, e map[string]string, field string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(e[field], 10, 64)
	if err != nil {
		t.Fatalf("%s = %q is not an integer number of milliseconds: %v", field, e[field], err)
	}
	return n
}

// checkEvent compares an entry with the lease the operation returned.
func checkEvent(t *testing.T, e map[string]string, name string, l coordinator.Lease, count int, req string) {
	t.Helper()
	want := map[string]string{
		"event": name, "type": l.Resource.Type, "id": l.Resource.ID, "owner": l.Owner,
		"token": strconv.FormatUint(l.Token, 10), "count": strconv.Itoa(count),
		"acquired_at": ms(l.AcquiredAt), "expires_at": ms(l.ExpiresAt), "req": req,
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s event: %s = %q, want %q (event %v)", name, k, e[k], v, e)
		}
	}
	at := msAt(t, e, "at")
	if at < l.AcquiredAt.UnixMilli() || at > l.ExpiresAt.UnixMilli() {
		t.Errorf("%s event: at %d is outside the lease [%d, %d]", name, at, l.AcquiredAt.UnixMilli(), l.ExpiresAt.UnixMilli())
	}
}

func TestOutboxEvents(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		r := coordinator.Resource{Type: "job", ID: "audit/1 ünï"}
		p := s.Layout().Partition(r)
		// a fence above 2^52, so that a token printed as a Lua double
		// would lose digits
		const base = uint64(1)<<52 + 777
		if err := b.client.Set(ctx, s.Layout().FenceKey(p), strconv.FormatUint(base, 10), 0).Err(); err != nil {
			t.Fatal(err)
		}
		o := &outbox{t: t, b: b, key: s.Layout().StreamKey(p)}

		a := lease(t)(s.Acquire(ctx, request(r, "w1", "a1", 30*time.Second)))
		if a.Token != base+1 {
			t.Fatalf("token %d, want %d", a.Token, base+1)
		}
		e := o.next("acquire")
		checkEvent(t, e, "acquired", a, 1, "a1")
		if e["at"] != ms(a.AcquiredAt) || e["token"] != "4503599627371274" {
			t.Fatalf("acquired event at %s token %s, want %s and 4503599627371274", e["at"], e["token"], ms(a.AcquiredAt))
		}
		if d := time.Since(a.AcquiredAt); d < -time.Minute || d > time.Minute {
			t.Fatalf("acquired_at %v is not Redis's now", a.AcquiredAt)
		}

		// the outbox records changes only: a conflict, another owner's
		// renew or release, a free resource's renew or release, and any
		// repeated request id write nothing
		if _, err := s.Acquire(ctx, request(r, "w2", "x1", time.Minute)); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("conflict: %v", err)
		}
		if _, err := s.Renew(ctx, request(r, "w2", "x2", time.Minute)); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("renew by another: %v", err)
		}
		if _, err := s.Release(ctx, request(r, "w2", "x3", 0)); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("release by another: %v", err)
		}
		free := coordinator.Resource{Type: "job", ID: "free"}
		_, _ = s.Renew(ctx, request(free, "w1", "x4", time.Minute))
		_, _ = s.Release(ctx, request(free, "w1", "x5", 0))
		lease(t)(s.Acquire(ctx, request(r, "w1", "a1", 30*time.Second)))
		o.none("failed operations and a repeated acquire")
		if n := len(entries(t, b.client, s.Layout().StreamKey(s.Layout().Partition(free)))); s.Layout().Partition(free) != p && n != 0 {
			t.Fatalf("operations on a free resource wrote %d events", n)
		}

		re := lease(t)(s.Acquire(ctx, request(r, "w1", "a2", time.Minute)))
		e = o.next("re-enter")
		checkEvent(t, e, "reentered", re, 2, "a2")
		if re.Token != a.Token || !re.AcquiredAt.Equal(a.AcquiredAt) {
			t.Fatalf("re-entry changed the token or acquired_at: %+v", re)
		}
		if d := msAt(t, e, "expires_at") - msAt(t, e, "at"); d != 60000 {
			t.Fatalf("re-entered: expires_at - at = %d ms, want the 60000 asked for", d)
		}
		lease(t)(s.Acquire(ctx, request(r, "w1", "a2", time.Minute)))
		o.none("repeated re-entry")

		n := lease(t)(s.Renew(ctx, request(r, "w1", "n1", 45*time.Second)))
		e = o.next("renew")
		checkEvent(t, e, "renewed", n, 2, "n1")
		if d := msAt(t, e, "expires_at") - msAt(t, e, "at"); d != 45000 {
			t.Fatalf("renewed: expires_at - at = %d ms, want 45000", d)
		}
		lease(t)(s.Renew(ctx, request(r, "w1", "n1", 45*time.Second)))
		o.none("repeated renew")

		d := lease(t)(s.Release(ctx, request(r, "w1", "r1", 0)))
		if d.Count != 1 {
			t.Fatalf("decrement left %d holds", d.Count)
		}
		checkEvent(t, o.next("decrement"), "decremented", n, 1, "r1")
		lease(t)(s.Release(ctx, request(r, "w1", "r1", 0)))
		o.none("repeated decrement")

		f := lease(t)(s.Release(ctx, request(r, "w1", "r2", 0)))
		if f.Count != 0 {
			t.Fatalf("final release left %d holds", f.Count)
		}
		e = o.next("release")
		checkEvent(t, e, "released", n, 0, "r2")
		if by, ok := e["by"]; ok {
			t.Fatalf("released event with by = %q: only a forced release names an operator", by)
		}
		lease(t)(s.Release(ctx, request(r, "w1", "r2", 0)))
		o.none("repeated release")

		// another owner, several holds, forced off by an operator
		w2 := lease(t)(s.Acquire(ctx, request(r, "w2", "b1", time.Minute)))
		if w2.Token != base+2 {
			t.Fatalf("next token %d, want %d", w2.Token, base+2)
		}
		checkEvent(t, o.next("acquire by w2"), "acquired", w2, 1, "b1")
		w2 = lease(t)(s.Acquire(ctx, request(r, "w2", "b2", time.Minute)))
		o.next("re-enter by w2")
		for _, by := range []string{"", " \t"} {
			if _, err := s.ForceReleaseBy(ctx, r, by, "f0"); !errors.Is(err, coordinator.ErrInvalid) || !strings.Contains(err.Error(), "invalid by") {
				t.Fatalf("ForceReleaseBy by %q: %v, want ErrInvalid naming by", by, err)
			}
		}
		forced := lease(t)(s.ForceReleaseBy(ctx, r, "alice@ops", "f1"))
		if forced.Owner != "w2" || forced.Count != 0 || forced.Token != w2.Token {
			t.Fatalf("ForceRelease = %+v", forced)
		}
		e = o.next("force")
		checkEvent(t, e, "forced", w2, 0, "f1")
		if by, ok := e["by"]; !ok || by != "alice@ops" {
			t.Fatalf("forced event: by = %q (%v), want the operator alice@ops", by, ok)
		}
		// no operator named: by is there, empty
		w2 = lease(t)(s.Acquire(ctx, request(r, "w2", "b3", time.Minute)))
		o.next("acquire by w2 again")
		lease(t)(s.ForceRelease(ctx, r, "f2"))
		if e = o.next("force without by"); e["event"] != "forced" || e["by"] != "" {
			t.Fatalf("ForceRelease's event: %v, want forced with an empty by", e)
		}

		// ReleaseAll writes one released event per lease
		lease(t)(s.Acquire(ctx, request(r, "w3", "c1", time.Minute)))
		o.next("acquire by w3")
		l3 := lease(t)(s.Acquire(ctx, request(r, "w3", "c2", time.Minute)))
		o.next("re-enter by w3")
		if got, err := s.ReleaseAll(ctx, "w3", "all1"); err != nil || got != 1 {
			t.Fatalf("ReleaseAll = %d, %v", got, err)
		}
		e = o.next("release all")
		checkEvent(t, e, "released", l3, 0, e["req"])
		if e["req"] == "" {
			t.Fatalf("release-all event without a request id")
		}
	})
}

func TestOutboxOff(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithOutbox(false), redisstore.WithPartitions(4))
		if s.OutboxForTest() {
			t.Fatal("Outbox() = true with WithOutbox(false)")
		}
		var ids reqIDs
		for i := range 8 {
			r := coordinator.Resource{Type: "job", ID: strconv.Itoa(i)}
			lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
			lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
			lease(t)(s.Renew(ctx, request(r, "w1", ids.next(), time.Minute)))
			lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
			switch i % 3 {
			case 0:
				lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
			case 1:
				lease(t)(s.ForceRelease(ctx, r, ids.next()))
			}
		}
		if _, err := s.ReleaseAll(ctx, "w1", ids.next()); err != nil {
			t.Fatal(err)
		}
		for p := range s.Layout().Partitions() {
			if n := must[int64](t)(b.client.Exists(ctx, s.Layout().StreamKey(p)).Result()); n != 0 {
				t.Fatalf("partition %d has a stream with the outbox off", p)
			}
		}
		// the same operations with the outbox on do write
		on := redisstore.New(b.client, redisstore.WithPrefix(s.Layout().Prefix()), redisstore.WithPartitions(4))
		if !on.OutboxForTest() {
			t.Fatal("Outbox() = false by default")
		}
		r := coordinator.Resource{Type: "job", ID: "0"}
		lease(t)(on.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		if n := len(entries(t, b.client, on.Layout().StreamKey(on.Layout().Partition(r)))); n != 1 {
			t.Fatalf("outbox on: %d events, want 1", n)
		}
	})
}

func TestStreamMaxLen(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		const limit, cycles = 10, 150
		capped := b.newStore(t, redisstore.WithStreamMaxLen(limit), redisstore.WithPartitions(1))
		uncapped := b.newStore(t, redisstore.WithPartitions(1))
		// XADD MAXLEN ~ trims whole stream nodes only: Redis keeps up to
		// stream-node-max-entries (default 100) more than the cap
		slack := int64(100)
		if b.mini == nil {
			cfg := must[map[string]string](t)(b.client.ConfigGet(ctx, "stream-node-max-entries").Result())
			slack = must[int64](t)(strconv.ParseInt(cfg["stream-node-max-entries"], 10, 64))
		}
		for _, s := range []*redisstore.Store{capped, uncapped} {
			var ids reqIDs
			r := coordinator.Resource{Type: "job", ID: "busy"}
			last := ""
			for range cycles {
				lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
				last = ids.next()
				lease(t)(s.Release(ctx, request(r, "w1", last, 0)))
			}
			all := entries(t, b.client, s.Layout().StreamKey(0))
			n := int64(len(all))
			if s == uncapped {
				if n != 2*cycles {
					t.Fatalf("default cap: %d entries, want all %d", n, 2*cycles)
				}
				continue
			}
			if n < limit || n > limit+slack {
				t.Fatalf("MAXLEN ~ %d: stream has %d entries, want %d to %d", limit, n, limit, limit+slack)
			}
			if got := all[len(all)-1]["req"]; got != last {
				t.Fatalf("newest entry is %q, want %q: trimming must drop the oldest", got, last)
			}
		}
	})
}

// TestOutboxMeta: the events of a lease with metadata carry it (field
// meta), as the lease has it at each change; a lease without metadata
// writes no meta field. The lease hash keeps it in field meta.
func TestOutboxMeta(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		r := coordinator.Plan("meta-events")
		key := s.Layout().StreamKey(s.Layout().Partition(r))
		withMeta := func(id, meta string) coordinator.Request {
			req := request(r, "w1", id, time.Minute)
			req.Meta = meta
			return req
		}
		lease(t)(s.Acquire(ctx, withMeta("m1", "host-1")))
		lease(t)(s.Acquire(ctx, withMeta("m2", "")))
		lease(t)(s.Acquire(ctx, withMeta("m3", "phase 2")))
		if got := b.client.HGet(ctx, s.Layout().LeaseKey(r), "meta").Val(); got != "phase 2" {
			t.Fatalf("lease hash meta = %q, want the last one given", got)
		}
		lease(t)(s.Renew(ctx, request(r, "w1", "m4", time.Minute)))
		lease(t)(s.Release(ctx, request(r, "w1", "m5", 0)))
		want := []string{"host-1", "host-1", "phase 2", "phase 2", "phase 2"}
		es := entries(t, b.client, key)
		if len(es) != len(want) {
			t.Fatalf("%d events, want %d", len(es), len(want))
		}
		for i, e := range es {
			if e["meta"] != want[i] {
				t.Errorf("event %d (%s): meta %q, want %q", i, e["event"], e["meta"], want[i])
			}
		}
		plain := coordinator.Plan("no-meta-events")
		lease(t)(s.Acquire(ctx, request(plain, "w1", "p1", time.Minute)))
		es = entries(t, b.client, s.Layout().StreamKey(s.Layout().Partition(plain)))
		if _, ok := es[len(es)-1]["meta"]; ok {
			t.Fatalf("an event of a lease without metadata has a meta field: %v", es[len(es)-1])
		}
		if n := b.client.HExists(ctx, s.Layout().LeaseKey(plain), "meta").Val(); n {
			t.Fatal("a lease without metadata has a meta field")
		}
	})
}
