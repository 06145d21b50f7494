package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// The modes property test drives one coordinator with random sequences of
// exclusive, shared and counted acquisitions (fresh, re-entries,
// upgrades), renewals, releases, inspections and holder listings by three
// owners on two resources. Each reply is compared with a model of every
// holder; and each sequence's recorded history must pass the history
// checker (chaos/internal/history), whose model of modes and caps this
// tests on legal histories. It runs on the MemStore (the reference of
// the store contract) and on redisstore on a real Redis when redisstore
// takes shared leases (until then that half is skipped, saying why).
// TTLs are 10 to 60 minutes: no hold ends by itself.

// mHold is the model of one owner's hold.
type mHold struct {
	count   int
	token   uint64
	expires int64 // Unix ms, as last reported
}

// mRes is the model of one resource: its mode, its cap, its holders.
type mRes struct {
	shared bool
	cap    int
	holds  map[string]*mHold
}

// modesRun is one sequence.
type modesRun struct {
	t      *rapid.T
	c      *coordinator.Coordinator
	res    map[coordinator.Resource]*mRes
	maxTok map[coordinator.Resource]uint64 // the highest token seen per resource
	steps  *atomic.Int64
	trail  []string
}

// modesStore is a store under test: a fresh, empty one per sequence.
type modesStore struct {
	name string
	new  func(t *rapid.T) coordinator.Store
}

func TestModesModel(t *testing.T) {
	parallel(t)
	stores := []modesStore{{"memstore", func(*rapid.T) coordinator.Store { return storetest.NewMemStore() }}}
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = client.Close() })
	var seq atomic.Int64
	stores = append(stores, modesStore{"redisstore", func(*rapid.T) coordinator.Store {
		return redisstore.New(client, redisstore.WithPrefix("modes-"+strconv.FormatInt(seq.Add(1), 36)), redisstore.WithPartitions(4))
	}})
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			if err := probeShared(st.new(nil)); err != nil {
				t.Fatalf("the store does not take shared leases: %v", err)
			}
			var steps, ops atomic.Int64
			start := time.Now()
			rapid.Check(t, func(rt *rapid.T) {
				rec := history.NewRecorder(nil)
				c := coordinator.New(rec.Store(st.new(rt), 0))
				rt.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = c.Close(ctx)
				})
				m := &modesRun{t: rt, c: c, res: map[coordinator.Resource]*mRes{}, maxTok: map[coordinator.Resource]uint64{}, steps: &steps}
				rt.Repeat(map[string]func(*rapid.T){
					"acquire": m.acquire,
					"renew":   m.renew,
					"release": m.release,
					"inspect": m.inspect,
					"holders": m.holders,
				})
				rep := history.Check(rec.Ops(), nil, history.Options{Timeout: time.Minute})
				if !rep.OK() {
					rt.Fatalf("history rejected by the checker:\n%s\nsteps:\n  %s", rep, strings.Join(m.trail, "\n  "))
				}
				n, _ := rep.Ops()
				ops.Add(int64(n))
			})
			report(t, "modes model (%s): %d steps, %d operations checked by the history model, %v",
				st.name, steps.Load(), ops.Load(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// probeShared takes and gives back a shared lease on s.
func probeShared(s coordinator.Store) error {
	c := coordinator.New(s)
	defer func() { _ = c.Close(context.Background()) }()
	r := coordinator.Resource{Type: "modes", ID: "probe"}
	if _, err := c.Acquire(context.Background(), r, "probe", coordinator.Shared()); err != nil {
		return err
	}
	_, err := c.Release(context.Background(), r, "probe")
	return err
}

var (
	modesOwners    = []string{"owner-a", "owner-b", "owner-c"}
	modesResources = []coordinator.Resource{{Type: "modes", ID: "r0"}, {Type: "modes", ID: "r1"}}
)

func (m *modesRun) step(format string, args ...any) {
	m.steps.Add(1)
	m.trail = append(m.trail, fmt.Sprintf(format, args...))
}

func (m *modesRun) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s\nsteps:\n  %s", fmt.Sprintf(format, args...), strings.Join(m.trail, "\n  "))
}

func (m *modesRun) draw() (coordinator.Resource, string) {
	r := rapid.SampledFrom(modesResources).Draw(m.t, "resource")
	return r, rapid.SampledFrom(modesOwners).Draw(m.t, "owner")
}

func ttlOpt(t *rapid.T) coordinator.AcquireOption {
	return coordinator.TTL(time.Duration(rapid.IntRange(10, 60).Draw(t, "ttl min")) * time.Minute)
}

// acquire asks for r exclusive, shared, or shared with 1 to 3 permits.
func (m *modesRun) acquire(t *rapid.T) {
	r, o := m.draw()
	kind := rapid.IntRange(0, 4).Draw(t, "mode") // 0 exclusive, 1 shared, 2-4 permits 1-3
	shared, permits := kind > 0, max(kind-1, 0)
	opts := []coordinator.AcquireOption{ttlOpt(t)}
	switch {
	case permits > 0:
		opts = append(opts, coordinator.Permits(permits))
	case shared:
		opts = append(opts, coordinator.Shared())
	}
	m.step("acquire %s by %s shared=%v permits=%d", r, o, shared, permits)
	l, err := m.c.Acquire(context.Background(), r, o, opts...)
	m.expectAcquire(r, o, shared, permits, l, err)
}

// expectAcquire compares an acquisition's outcome with the model's and
// applies it.
func (m *modesRun) expectAcquire(r coordinator.Resource, o string, shared bool, permits int, l coordinator.Lease, err error) {
	x := m.res[r]
	var mine *mHold
	if x != nil {
		mine = x.holds[o]
	}
	switch {
	case x != nil && x.shared && shared && permits != 0 && permits != x.cap:
		if err == nil {
			m.fail("cap %d asked of %s capped at %d: %+v, want ErrInvalid", permits, r, x.cap, l)
		}
		named := strings.Contains(err.Error(), "capped at "+strconv.Itoa(x.cap)) || x.cap == 0 && strings.Contains(err.Error(), "no cap")
		if !errors.Is(err, coordinator.ErrInvalid) || !named {
			m.fail("cap %d asked of %s capped at %d: %v, want ErrInvalid naming the recorded cap", permits, r, x.cap, err)
		}
		return
	case mine != nil && x.shared && !shared && len(x.holds) > 1:
		ce, ok := errors.AsType[*coordinator.ConflictError](err)
		if !ok || !ce.Upgrade || ce.Holders != len(x.holds) || ce.Holder == o {
			m.fail("upgrade of %s by %s beside %d holders: %v, want an upgrade conflict", r, o, len(x.holds)-1, err)
		}
		return
	case mine != nil:
		m.reentered(r, o, x, mine, shared, l, err)
		return
	case x != nil && (!x.shared || !shared || x.cap > 0 && len(x.holds) >= x.cap):
		ce, ok := errors.AsType[*coordinator.ConflictError](err)
		if !ok || x.holds[ce.Holder] == nil || ce.Holders != len(x.holds) || ce.Token != x.holds[ce.Holder].token {
			m.fail("acquire of %s by %s (shared %v) against %d holders (shared %v, cap %d): %v, want a conflict",
				r, o, shared, len(x.holds), x.shared, x.cap, err)
		}
		return
	}
	// a new hold: on a free resource, or joining shared holders
	if err != nil || l.Count != 1 || l.Token <= m.maxTok[r] || (l.Mode == coordinator.ModeShared) != shared {
		m.fail("new hold of %s by %s (shared %v): %+v, %v; want count 1, a token above %d", r, o, shared, l, err, m.maxTok[r])
	}
	if x == nil {
		x = &mRes{shared: shared, cap: permits, holds: map[string]*mHold{}}
		m.res[r] = x
	}
	if l.Permits != x.cap {
		m.fail("new hold of %s reports cap %d, want %d", r, l.Permits, x.cap)
	}
	x.holds[o] = &mHold{count: 1, token: l.Token, expires: l.ExpiresAt.UnixMilli()}
	m.maxTok[r] = l.Token
}

// reentered checks a re-entry, or the upgrade of the sole shared holder.
func (m *modesRun) reentered(r coordinator.Resource, o string, x *mRes, h *mHold, shared bool, l coordinator.Lease, err error) {
	upgrade := x.shared && !shared
	if err != nil || l.Count != h.count+1 {
		m.fail("re-entry of %s by %s (upgrade %v): %+v, %v; want count %d", r, o, upgrade, l, err, h.count+1)
	}
	switch {
	case upgrade:
		if l.Token <= m.maxTok[r] || l.Mode != coordinator.ModeExclusive {
			m.fail("upgrade of %s by %s: %+v, want exclusive with a token above %d", r, o, l, m.maxTok[r])
		}
		x.shared, x.cap = false, 0
		h.token, m.maxTok[r] = l.Token, l.Token
	case l.Token != h.token || (l.Mode == coordinator.ModeShared) != x.shared:
		m.fail("re-entry of %s by %s: %+v, want token %d, shared %v", r, o, l, h.token, x.shared)
	}
	h.count++
	h.expires = l.ExpiresAt.UnixMilli()
}

// renew renews a random owner's hold of r.
func (m *modesRun) renew(t *rapid.T) {
	r, o := m.draw()
	m.step("renew %s by %s", r, o)
	l, err := m.c.Renew(context.Background(), r, o, ttlOpt(t))
	x := m.res[r]
	switch {
	case x == nil:
		if !errors.Is(err, coordinator.ErrExpired) {
			m.fail("renew of free %s: %v, want ErrExpired", r, err)
		}
	case x.holds[o] == nil:
		le, ok := errors.AsType[*coordinator.LeaseError](err)
		if !ok || !errors.Is(err, coordinator.ErrNotHeld) || x.holds[le.Holder] == nil {
			m.fail("renew of %s by %s, not a holder: %v, want ErrNotHeld naming a holder", r, o, err)
		}
	default:
		h := x.holds[o]
		if err != nil || l.Token != h.token || l.Count != h.count {
			m.fail("renew of %s by %s: %+v, %v; model %+v", r, o, l, err, *h)
		}
		h.expires = l.ExpiresAt.UnixMilli()
	}
}

// release drops one hold of a random owner on r.
func (m *modesRun) release(t *rapid.T) {
	r, o := m.draw()
	m.step("release %s by %s", r, o)
	l, err := m.c.Release(context.Background(), r, o)
	x := m.res[r]
	switch {
	case x == nil || x.holds[o] == nil:
		if !errors.Is(err, coordinator.ErrNotHeld) {
			m.fail("release of %s by %s, not a holder: %v, want ErrNotHeld", r, o, err)
		}
	default:
		h := x.holds[o]
		if err != nil || l.Count != h.count-1 || l.Token != h.token {
			m.fail("release of %s by %s: %+v, %v; model %+v", r, o, l, err, *h)
		}
		if h.count--; h.count == 0 {
			delete(x.holds, o)
		}
		if len(x.holds) == 0 {
			delete(m.res, r)
		}
	}
}

// inspect reports the holder of r whose hold ends first.
func (m *modesRun) inspect(t *rapid.T) {
	r := rapid.SampledFrom(modesResources).Draw(t, "resource")
	m.step("inspect %s", r)
	l, err := m.c.Inspect(context.Background(), r)
	want := m.sorted(r)
	switch {
	case len(want) == 0:
		if !errors.Is(err, coordinator.ErrNotHeld) {
			m.fail("inspect of free %s: %v", r, err)
		}
	case err != nil || l.Owner != want[0].Owner || l.Token != want[0].Token || l.Mode != want[0].Mode:
		m.fail("inspect of %s: %+v, %v; want %+v", r, l, err, want[0])
	}
}

// holders lists every holder of r.
func (m *modesRun) holders(t *rapid.T) {
	r := rapid.SampledFrom(modesResources).Draw(t, "resource")
	m.step("holders %s", r)
	ls, err := m.c.Holders(context.Background(), r)
	want := m.sorted(r)
	if len(want) == 0 {
		if !errors.Is(err, coordinator.ErrNotHeld) {
			m.fail("holders of free %s: %v", r, err)
		}
		return
	}
	if err != nil || len(ls) != len(want) {
		m.fail("holders of %s: %+v, %v; want %+v", r, ls, err, want)
	}
	for i, l := range ls {
		w := want[i]
		if l.Owner != w.Owner || l.Token != w.Token || l.Count != w.Count || l.Mode != w.Mode || l.Permits != w.Permits {
			m.fail("holders of %s: %+v, want %+v", r, ls, want)
		}
	}
}

// sorted returns the model's holders of r as leases, by expiry, then owner.
func (m *modesRun) sorted(r coordinator.Resource) []coordinator.Lease {
	x := m.res[r]
	if x == nil {
		return nil
	}
	var out []coordinator.Lease
	for o, h := range x.holds {
		l := coordinator.Lease{Owner: o, Token: h.token, Count: h.count, ExpiresAt: time.UnixMilli(h.expires)}
		if x.shared {
			l.Mode, l.Permits = coordinator.ModeShared, x.cap
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b coordinator.Lease) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.Owner, b.Owner))
	})
	return out
}
