package chaos

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
)

// liar is a broken lock: it grants a resource held by another owner,
// as a lock that lost its data or ignores its own state would.
type liar struct {
	coordinator.Store
}

func (l liar) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	lease, err := l.Store.Acquire(ctx, req)
	if ce, ok := errors.AsType[*coordinator.ConflictError](err); ok {
		now := time.Now()
		return coordinator.Lease{Resource: req.Resource, Owner: req.Owner, Count: 1, Token: ce.Token + 1,
			AcquiredAt: now, ExpiresAt: now.Add(req.TTL)}, nil
	}
	return lease, err
}

// TestCheckersCatchABrokenLock is the control of the checkers: a store
// that grants held resources must make the history checker fail and the
// fenced resource see two live holders.
func TestCheckersCatchABrokenLock(t *testing.T) {
	parallel(t)
	w := newWorld(t, worldConfig{client: clientOptions(2 * time.Second)})
	r := resources("control", 1)[0]
	tr := fenced.NewTracker(fenced.NewMemory(), r.String())
	var wg sync.WaitGroup
	for i := range 3 {
		c := coordinator.New(w.rec.Store(liar{w.store(w.client())}, i))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		wk := &worker{id: i, owner: "liar-" + randomHex(2), c: c, proc: &process{}}
		wg.Go(func() {
			for range 10 {
				hold(context.Background(), wk, tr, r, 20*time.Millisecond, 0, coordinator.TTL(time.Second))
			}
		})
	}
	wg.Wait()
	ops := w.rec.Ops()
	res := history.Check(ops, nil, history.Options{Timeout: time.Minute, MaxDelay: 10 * time.Second})
	if res.OK() || res.Results[0].Outcome != porcupine.Illegal {
		t.Errorf("the history checker did not find a lock granting held resources illegal (%d operations): %s", len(ops), res)
	}
	if st := tr.Stats(); st.LiveOverlaps == 0 {
		t.Errorf("the fenced resource saw no live overlap with a broken lock: %+v", st)
	}
}

// capLiar is a broken shared lock: it grants a shared request that its
// store refused because the cap was reached, with a fresh token, and
// answers the release of such a phantom lease itself, so that the cap is
// the only thing it breaks.
type capLiar struct {
	coordinator.Store
	mu       sync.Mutex
	phantoms map[string]coordinator.Lease // by resource and owner
}

func (l *capLiar) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	lease, err := l.Store.Acquire(ctx, req)
	if ce, ok := errors.AsType[*coordinator.ConflictError](err); ok && ce.Mode == coordinator.ModeShared && !ce.Upgrade {
		now := time.Now()
		lease = coordinator.Lease{Resource: req.Resource, Owner: req.Owner, Count: 1, Token: uint64(now.UnixMicro()),
			AcquiredAt: now, ExpiresAt: now.Add(req.TTL), Mode: coordinator.ModeShared, Permits: ce.Permits}
		l.mu.Lock()
		l.phantoms[req.Resource.String()+"|"+req.Owner] = lease
		l.mu.Unlock()
		return lease, nil
	}
	return lease, err
}

func (l *capLiar) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	k := req.Resource.String() + "|" + req.Owner
	l.mu.Lock()
	p, ok := l.phantoms[k]
	delete(l.phantoms, k)
	l.mu.Unlock()
	if ok {
		p.Count = 0
		return p, nil
	}
	return l.Store.Release(ctx, req)
}

// TestCheckersCatchABrokenCap is the control of the checkers for caps:
// a store that lets a shared holder in beyond the cap must make the
// history checker fail and the fenced resource see an entry beyond the
// cap that no expiry explains.
func TestCheckersCatchABrokenCap(t *testing.T) {
	parallel(t)
	w := newWorld(t, worldConfig{client: clientOptions(2 * time.Second)})
	r := resources("control-cap", 1)[0]
	tr := fenced.NewSharedTracker(fenced.NewMemory(), r.String(), sharedCap)
	var mu sync.Mutex
	var holds []*holdRecord
	var wg sync.WaitGroup
	for i := range sharedCap + 2 {
		c := coordinator.New(w.rec.Store(&capLiar{Store: w.store(w.client()), phantoms: map[string]coordinator.Lease{}}, i))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		wk := &worker{id: i, owner: "cap-liar-" + randomHex(2), c: c, proc: &process{}}
		wg.Go(func() {
			for range 10 {
				h := holdIn(context.Background(), wk, tr, r, 20*time.Millisecond, 0, true, modeOpts(true, coordinator.TTL(time.Second))...)
				mu.Lock()
				holds = append(holds, h)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ops := w.rec.Ops()
	res := history.Check(ops, nil, history.Options{Timeout: time.Minute, MaxDelay: 10 * time.Second})
	if res.OK() || res.Results[0].Outcome != porcupine.Illegal {
		t.Errorf("the history checker did not find a lock exceeding its cap illegal (%d operations): %s", len(ops), res)
	}
	st := tr.Stats()
	if _, faults := capOvertaken(st, holds, w.rec, w.stalls, 100*time.Millisecond); len(faults) == 0 {
		t.Errorf("the fenced resource saw no unexplained entry beyond the cap with a broken lock: %+v", st)
	}
}
