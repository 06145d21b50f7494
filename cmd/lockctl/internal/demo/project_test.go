package demo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// TestProjectHierarchyChecks: the plan store catches each break of the
// hierarchy: an exclusive project holder beside a plan holder (either
// entering first), beside a shared holder, a shared holder beside an
// exclusive one, more shared holders than permits; a lost holder (its
// context ended) is no longer counted.
func TestProjectHierarchyChecks(t *testing.T) {
	s := NewPlanStore(2, 1, 1)
	ctx := context.Background()
	plan := s.Open()[0]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// two transitions share the project under a cap of 2; a third is over
	must(s.EnterProject(ctx, "proj-1", "a", 10, false, 2))
	must(s.EnterProject(ctx, "proj-1", "b", 11, false, 2))
	if st := s.Stats(); st.CapOverflows != 0 || st.MaxHolders != 2 || st.ExclusiveOverlaps != 0 {
		t.Fatalf("two of two: %+v", st)
	}
	must(s.EnterProject(ctx, "proj-1", "c", 9, false, 2)) // shared holders come in any order
	if st := s.Stats(); st.CapOverflows != 1 || st.MaxHolders != 3 {
		t.Fatalf("three of two: %+v", st)
	}
	s.LeaveProject("proj-1", "c")
	s.LeaveProject("proj-1", "b")
	// a plan held under "a": a job entering the project is an overlap
	must(s.Enter(ctx, coordinator.Plan(plan), "a", 12))
	must(s.EnterProject(ctx, "proj-1", "job", 20, true, 0))
	must(s.ProjectJob("job", 20, "proj-1"))
	st := s.Stats()
	if st.ExclusiveOverlaps != 2 || st.ProjectJobs != 1 {
		t.Fatalf("job beside a transition: %+v", st)
	}
	// a plan entered while the job holds the project is one too
	lost, cancel := context.WithCancel(ctx)
	must(s.Enter(ctx, coordinator.Plan(s.Open()[1]), "d", 21))
	if got := s.Stats().ExclusiveOverlaps; got != 3 {
		t.Fatalf("a plan entered under an exclusive project: %d overlaps", got)
	}
	// a shared entry with a token older than the job's is stale
	if err := s.EnterProject(ctx, "proj-1", "e", 15, false, 2); !errors.Is(err, ErrStale) {
		t.Fatalf("shared token under the job's: %v", err)
	}
	// and a job's token must exceed every shared one
	s.LeaveProject("proj-1", "job")
	must(s.EnterProject(lost, "proj-1", "f", 30, false, 2))
	if err := s.EnterProject(ctx, "proj-1", "job2", 25, true, 0); !errors.Is(err, ErrStale) {
		t.Fatalf("exclusive token under a shared one: %v", err)
	}
	// a lost holder does not count
	cancel()
	s.Leave(coordinator.Plan(plan), "a")
	s.Leave(coordinator.Plan(s.Open()[1]), "d")
	s.LeaveProject("proj-1", "a")
	before := s.Stats().ExclusiveOverlaps
	must(s.EnterProject(ctx, "proj-1", "job3", 40, true, 0))
	if st := s.Stats(); st.ExclusiveOverlaps != before || !strings.Contains(strings.Join(st.Violations, "\n"), "3 of 2 permits") {
		t.Fatalf("after the loss: %+v", st)
	}
	if len(s.Projects()) != 1 {
		t.Fatalf("projects %v", s.Projects())
	}
}

// TestRecorderTokensAcrossModes: shared holds of several owners may be
// recorded in any order, but no hold's token may fall under an earlier
// exclusive one, and no exclusive token under any earlier one.
func TestRecorderTokensAcrossModes(t *testing.T) {
	r := NewRecorder()
	res := coordinator.Project("p")
	shared := func(owner string, tok uint64) {
		r.acquire(coordinator.Request{Resource: res, Owner: owner}, coordinator.Lease{Token: tok, Count: 1, Mode: coordinator.ModeShared}, time.Millisecond, nil)
	}
	excl := func(owner string, tok uint64) {
		r.acquire(coordinator.Request{Resource: res, Owner: owner}, coordinator.Lease{Token: tok, Count: 1}, time.Millisecond, nil)
	}
	shared("a", 11)
	shared("b", 10)
	if v := r.Stats().TokenViolations; len(v) != 0 {
		t.Fatalf("shared holds out of order: %v", v)
	}
	excl("w", 11)
	if v := r.Stats().TokenViolations; len(v) != 1 {
		t.Fatalf("an exclusive token not above a shared one: %v", v)
	}
	excl("w", 20)
	shared("c", 19)
	if v := r.Stats().TokenViolations; len(v) != 2 || !strings.Contains(v[1], "shared by c with token 19 after token 20") {
		t.Fatalf("a shared token under an exclusive one: %v", v)
	}
}

// TestRunHierarchy: a run that goes on until plans completed and
// project-wide jobs ran keeps every invariant, the cap included, and
// shows them in the summary.
func TestRunHierarchy(t *testing.T) {
	_, s := newStore(t)
	sum, err := Run(context.Background(), Config{Store: s, Workers: 4, Duration: time.Minute, Completed: 3, Jobs: 2,
		Plans: 6, Projects: 2, PlansPerProject: 1, TTL: 500 * time.Millisecond, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := sum.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.ProjectJobs < 2 || sum.PlansCompleted < 3 || sum.MaxPlanHolders != 1 || sum.PlansPerProject != 1 {
		t.Fatalf("summary:\n%s", b.String())
	}
	for _, want := range []string{"ok    never an exclusive project holder while a plan of it is held",
		"ok    never more holders than permits (at most 1 of 1", "project-wide jobs", "(at most 1 moving per project)"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, b.String())
		}
	}
}
