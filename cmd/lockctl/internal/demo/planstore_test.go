package demo

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

func TestPlanStoreLifecycleAndFencing(t *testing.T) {
	s := NewPlanStore(2, 1, 2)
	open := s.Open()
	if len(open) != 2 || open[0] != "proj-1.1" {
		t.Fatalf("open plans %v", open)
	}
	id := open[0]
	r := coordinator.Plan(id)
	ctx := context.Background()
	if err := s.Enter(ctx, r, "a", 10); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Advance("a", 10, id, Draft, Queued))
	if s.Assigned(id) || !slices.Equal(s.QueuedIn("proj-1"), []string{id}) {
		t.Fatal("queued plan should need an assignment")
	}
	if !slices.Equal(s.Queued(), []string{id}) {
		t.Fatalf("Queued = %v", s.Queued())
	}
	must(s.Enter(ctx, SchedulerOffice, "a", 5))
	s.Elected("a")
	if ok, err := s.Assign("a", 5, id, []string{"w1", "w2"}); !ok || err != nil {
		t.Fatalf("Assign = %v, %v", ok, err)
	}
	if ok, _ := s.Assign("a", 5, id, []string{"w1"}); ok {
		t.Fatal("assigned twice")
	}
	s.Leave(SchedulerOffice, "a")
	// a new scheduler's term fences off the old one's assignments
	s.Elected("a")
	s.Elected("b")
	if _, err := s.Assign("b", 6, id, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Assign("a", 5, id, nil); !errors.Is(err, ErrStale) {
		t.Fatalf("the old term's assignment: %v", err)
	}
	if st := s.Stats(); st.Terms != 3 || st.HandOvers != 1 {
		t.Fatalf("terms %d, hand-overs %d", st.Terms, st.HandOvers)
	}
	must(s.Advance("a", 10, id, Queued, Running))
	must(s.Step("a", 10, id, 1))
	// completing before every subplan is done is out of order
	if err := s.Advance("a", 10, id, Running, Completed); !errors.Is(err, errOutOfOrder) {
		t.Fatalf("early completion: %v", err)
	}
	must(s.Step("a", 10, id, 2))
	s.Leave(r, "a")

	// a newer holder enters: the older token is fenced off
	must(s.Enter(ctx, r, "b", 11))
	if err := s.Advance("a", 10, id, Running, Completed); !errors.Is(err, ErrStale) {
		t.Fatalf("stale write: %v", err)
	}
	if err := s.Enter(ctx, r, "a", 9); !errors.Is(err, ErrStale) {
		t.Fatalf("stale entry: %v", err)
	}
	must(s.Advance("b", 11, id, Running, Completed))
	s.Leave(r, "b")

	st := s.Stats()
	if st.Completed != 1 || st.Rejected != 3 || st.OutOfOrder != 1 || st.Transitions != 3 || st.Overlaps != 0 {
		t.Fatalf("stats %+v", st)
	}
	// a completed plan is replaced by a new draft
	if open := s.Open(); len(open) != 2 || slices.Contains(open, id) {
		t.Fatalf("open after completion %v", open)
	}
	if p, _ := s.Get(id); p.State != Completed || p.Token != 11 {
		t.Fatalf("plan %+v", p)
	}
}

func TestPlanStoreDetectsTwoLiveHolders(t *testing.T) {
	s := NewPlanStore(1, 1, 1)
	r := coordinator.Plan(s.Open()[0])
	lost, cancel := context.WithCancel(context.Background())
	if err := s.Enter(lost, r, "a", 1); err != nil {
		t.Fatal(err)
	}
	// a holder whose lease was declared lost (context cancelled) is no
	// longer a holder: the next may enter
	cancel()
	if err := s.Enter(context.Background(), r, "b", 2); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Overlaps != 0 {
		t.Fatalf("a lost holder counted as live: %+v", st)
	}
	// a live holder and another entering: a violation, named
	live, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if err := s.Enter(live, r, "c", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance("c", 3, r.ID, Draft, Queued); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Overlaps != 2 || len(st.Violations) != 2 {
		t.Fatalf("overlaps not detected: %+v", st)
	}
}

func TestRecorderTokens(t *testing.T) {
	rec := NewRecorder()
	r := coordinator.Plan("1")
	req := coordinator.Request{Resource: r, Owner: "a"}
	rec.acquire(req, coordinator.Lease{Token: 5, Count: 1}, time.Millisecond, nil)
	rec.acquire(req, coordinator.Lease{Token: 5, Count: 2}, 2*time.Millisecond, nil) // re-entry: same token
	rec.acquire(req, coordinator.Lease{}, time.Millisecond, &coordinator.ConflictError{Resource: r})
	rec.acquire(req, coordinator.Lease{Token: 7, Count: 1}, 3*time.Millisecond, nil)
	if st := rec.Stats(); len(st.TokenViolations) != 0 || st.Acquired != 2 || st.Reentered != 1 || st.Conflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
	rec.acquire(req, coordinator.Lease{Token: 7, Count: 1}, time.Millisecond, nil)
	rec.release(coordinator.Lease{Count: 1}, nil)
	rec.release(coordinator.Lease{}, nil)
	rec.release(coordinator.Lease{}, &coordinator.LeaseError{Err: coordinator.ErrNotHeld})
	rec.renew(nil)
	rec.renew(errors.New("boom"))
	st := rec.Stats()
	if len(st.TokenViolations) != 1 || st.Released != 1 || st.Decrements != 1 || st.Renewed != 1 || st.RenewFailed != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.Events() != 3+1+1+1+1 {
		t.Fatalf("events %d", st.Events())
	}
	if st.P50 != time.Millisecond || st.P99 != 3*time.Millisecond {
		t.Fatalf("p50 %s p99 %s", st.P50, st.P99)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(s, c.p); got != c.want {
			t.Fatalf("percentile %v = %d, want %d", c.p, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Fatal("percentile of nothing")
	}
}
