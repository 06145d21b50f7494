package fenced_test

import (
	"context"
	"testing"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/internal/testpg"
)

// sharedScenario: readers a (token 11) and b (token 12) enter together
// and read; writer w (token 10), whose lease ended before theirs began,
// was paused and writes (stale: a reader read with a higher token);
// writer x (token 13) writes after the readers left; reader c (token 12
// too: a re-entered lease would have it), paused since before x took
// over, reads (stale: x wrote with a higher token).
func sharedScenario(t *testing.T, s fenced.Store) fenced.Stats {
	t.Helper()
	ctx := context.Background()
	tr := fenced.NewSharedTracker(s, "shared", 2)
	must := func(_ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		id    int64
		owner string
		token uint64
	}{{1, "a", 11}, {2, "b", 12}} {
		if _, err := tr.EnterShared(ctx, r.id, r.owner, r.token); err != nil {
			t.Fatal(err)
		}
		must(tr.ReadFenced(ctx, r.id, r.owner, r.token, false, false))
	}
	must(tr.Write(ctx, 3, "w", 10, 1, false, true))
	tr.Exit(1)
	tr.Exit(2)
	if _, err := tr.Enter(ctx, 4, "x", 13); err != nil {
		t.Fatal(err)
	}
	must(tr.Write(ctx, 4, "x", 13, 2, false, false))
	tr.Exit(4)
	must(tr.ReadFenced(ctx, 5, "c", 12, false, true))
	return tr.Stats()
}

func TestSharedHolders(t *testing.T) {
	check := func(t *testing.T, s fenced.Store) {
		st := sharedScenario(t, s)
		if st.Overlaps != 0 || st.MaxShared != 2 || st.CapExcess != 0 {
			t.Errorf("overlaps %d, most shared %d, beyond the cap %d; want 0, 2, 0", st.Overlaps, st.MaxShared, st.CapExcess)
		}
		if st.Reads != 3 || st.ReadsAccepted != 2 || st.Accepted != 1 || st.Rejected != 1 {
			t.Errorf("stats %+v, want the stale write and the stale read rejected", st)
		}
		if st.StaleAccepted != 0 || st.WronglyRejected != 0 || st.RejectedUntold != 2 {
			t.Errorf("stats %+v, want no stale operation accepted, 2 untold holders superseded", st)
		}
	}
	t.Run("memory", func(t *testing.T) { check(t, fenced.NewMemory()) })
	t.Run("postgres", func(t *testing.T) {
		pg, err := fenced.NewPostgres(context.Background(), testpg.New(t).Pool(t))
		if err != nil {
			t.Fatal(err)
		}
		check(t, pg)
	})
	t.Run("unfenced", func(t *testing.T) {
		// the checker's control: the stale write and the stale read
		st := sharedScenario(t, &unfenced{})
		if st.StaleAccepted != 2 {
			t.Errorf("stale operations accepted by an unfenced register: %d, want 2\n%v", st.StaleAccepted, st.Details)
		}
	})
	t.Run("modes exclude", func(t *testing.T) {
		ctx := context.Background()
		tr := fenced.NewSharedTracker(fenced.NewMemory(), "r", 1)
		_, _ = tr.EnterShared(ctx, 1, "a", 10)
		_, _ = tr.EnterShared(ctx, 2, "b", 11) // beyond the cap of 1
		_, _ = tr.Enter(ctx, 3, "c", 12)       // beside two shared holds
		st := tr.Stats()
		if st.CapExcess != 1 || len(st.CapEvents[0].Inside) != 1 || st.LiveOverlaps != 2 || st.MaxShared != 2 {
			t.Errorf("stats %+v, want 1 entry beyond the cap, 2 live overlaps", st)
		}
	})
	t.Run("wrongly rejected read", func(t *testing.T) {
		ctx := context.Background()
		tr := fenced.NewTracker(refusing{fenced.NewMemory()}, "r")
		if _, err := tr.ReadFenced(ctx, 1, "a", 10, false, false); err != nil {
			t.Fatal(err)
		}
		if st := tr.Stats(); st.WronglyRejected != 1 {
			t.Errorf("wrongly rejected %d, want 1", st.WronglyRejected)
		}
	})
}

// refusing refuses every fenced read.
type refusing struct{ *fenced.Memory }

func (refusing) ReadFenced(context.Context, string, uint64, string) (bool, int64, int64, error) {
	return false, 0, 0, nil
}
