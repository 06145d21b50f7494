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
