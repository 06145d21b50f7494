package fenced_test

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/internal/testpg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unfenced accepts every write: what a resource without fencing does.
type unfenced struct {
	mu      sync.Mutex
	version int64
}

func (u *unfenced) Write(context.Context, string, uint64, string, int64) (bool, int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.version++
	return true, u.version, nil
}

func (u *unfenced) Read(context.Context, string) (int64, error) { return 0, nil }

func (u *unfenced) ReadFenced(context.Context, string, uint64, string) (bool, int64, int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.version++
	return true, 0, u.version, nil
}

// scenario: hold 1 (token 10) enters, hold 2 (token 11) enters and
// writes, then hold 1, told of its loss, writes.
func scenario(t *testing.T, s fenced.Store) fenced.Stats {
	t.Helper()
	ctx := context.Background()
	told, cancel := context.WithCancel(ctx)
	tr := fenced.NewTracker(s, "r")
	if _, err := tr.Enter(told, 1, "a", 10); err != nil {
		t.Fatal(err)
	}
	cancel() // a is told of its loss before b enters
	if _, err := tr.Enter(ctx, 2, "b", 11); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Write(ctx, 2, "b", 11, 1, false, false); err != nil {
		t.Fatal(err)
	}
	tr.Exit(2)
	if _, err := tr.Write(told, 1, "a", 10, 1, true, true); err != nil {
		t.Fatal(err)
	}
	tr.Exit(1)
	return tr.Stats()
}

func TestFencedStores(t *testing.T) {
	check := func(t *testing.T, s fenced.Store) {
		st := scenario(t, s)
		if st.Overlaps != 1 || st.LiveOverlaps != 0 {
			t.Errorf("overlaps %d (live %d), want 1 (0)", st.Overlaps, st.LiveOverlaps)
		}
		if st.Accepted != 1 || st.Rejected != 1 || st.StaleAccepted != 0 || st.WronglyRejected != 0 || st.RejectedUntold != 0 {
			t.Errorf("stats %+v, want the stale write rejected", st)
		}
	}
	t.Run("memory", func(t *testing.T) { check(t, fenced.NewMemory()) })
	t.Run("postgres", func(t *testing.T) {
		pg, err := fenced.NewPostgres(context.Background(), testpg.New(t).Pool(t))
		if err != nil {
			t.Fatal(err)
		}
		check(t, pg)
		// concurrent writers: the register takes tokens in increasing order only
		tr := fenced.NewTracker(pg, "concurrent")
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				if _, err := tr.Write(context.Background(), int64(i), "w", uint64(100+i), int64(i), false, false); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if st := tr.Stats(); st.StaleAccepted != 0 || st.WronglyRejected != 0 || st.Accepted == 0 {
			t.Errorf("concurrent writes: %+v", st)
		}
	})
	t.Run("unfenced", func(t *testing.T) {
		// the checker's control: without fencing the stale write is counted
		st := scenario(t, &unfenced{})
		if st.StaleAccepted != 1 {
			t.Errorf("stale writes accepted by an unfenced register: %d, want 1", st.StaleAccepted)
		}
	})
	t.Run("live overlap", func(t *testing.T) {
		tr := fenced.NewTracker(fenced.NewMemory(), "r")
		ctx := context.Background()
		_, _ = tr.Enter(ctx, 1, "a", 10)
		_, _ = tr.Enter(ctx, 2, "b", 11)
		if st := tr.Stats(); st.LiveOverlaps != 1 {
			t.Errorf("live overlaps %d, want 1", st.LiveOverlaps)
		}
	})
}
