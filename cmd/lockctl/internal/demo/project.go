package demo

import (
	"context"
	"fmt"
	"sort"

	"github.com/lockcoord/lockcoord/coordinator"
)

// projectHold is one owner's hold of a project, as the plan store sees
// it: shared by a plan transition, exclusive by a project-wide job; ctx
// ends when the lease is lost.
type projectHold struct {
	ctx       context.Context
	exclusive bool
}

// projectWatch is the plan store's watch of the project holds: who holds
// each project, in which mode, and what broke the hierarchy's rules.
type projectWatch struct {
	holders    map[string]map[string]projectHold // project -> owner -> hold
	jobs       int                               // project-wide jobs done
	maxHolders int                               // most live shared holders of one project seen at once
	// exclusiveOverlaps: an exclusive project holder and a holder of one
	// of its plans alive at once; capOverflows: more live shared holders
	// of a project than its permits
	exclusiveOverlaps, capOverflows int
}

// liveHolds returns the owners other than owner holding project with a
// live lease: the exclusive ones and the shared ones.
func (s *PlanStore) liveHolds(project, owner string) (exclusive, shared []string) {
	for o, h := range s.proj.holders[project] {
		if o == owner || h.ctx.Err() != nil {
			continue
		}
		if h.exclusive {
			exclusive = append(exclusive, o)
		} else {
			shared = append(shared, o)
		}
	}
	sort.Strings(exclusive)
	sort.Strings(shared)
	return exclusive, shared
}

// livePlanHolders returns the owners other than owner in the critical
// section of a plan of project with a live lease.
func (s *PlanStore) livePlanHolders(project, owner string) []string {
	var out []string
	for _, id := range s.byProject[project] {
		for _, o := range s.live(coordinator.Plan(id), owner) {
			out = append(out, o+" ("+id+")")
		}
	}
	return out
}

// EnterProject records owner's hold of project (exclusive for a
// project-wide job, else shared under a cap of permits, 0: none) and
// checks the hierarchy: no exclusive holder beside a plan holder of the
// project, no more shared holders than permits. A shared hold's token is
// checked against the exclusive holds' (shared holders enter in any
// order); an exclusive hold's against every hold's.
func (s *PlanStore) EnterProject(ctx context.Context, project, owner string, token uint64, exclusive bool, permits int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := coordinator.Project(project)
	if err := s.projectFenced(r, token, exclusive); err != nil {
		return err
	}
	excl, shared := s.liveHolds(project, owner)
	switch {
	case exclusive && len(excl)+len(shared) > 0:
		s.proj.exclusiveOverlaps++
		s.violation("%s took %s exclusive (token %d) while %v held it", owner, r, token, append(excl, shared...))
	case !exclusive && len(excl) > 0:
		s.proj.exclusiveOverlaps++
		s.violation("%s took %s shared (token %d) while %v held it exclusive", owner, r, token, excl)
	case !exclusive && permits > 0 && len(shared)+1 > permits:
		s.proj.capOverflows++
		s.violation("%s took %s shared (token %d) as holder %d of %d permits, beside %v", owner, r, token,
			len(shared)+1, permits, shared)
	}
	if !exclusive {
		s.proj.maxHolders = max(s.proj.maxHolders, len(shared)+1)
	}
	if s.proj.holders == nil {
		s.proj.holders = map[string]map[string]projectHold{}
	}
	if s.proj.holders[project] == nil {
		s.proj.holders[project] = map[string]projectHold{}
	}
	s.proj.holders[project][owner] = projectHold{ctx: ctx, exclusive: exclusive}
	return nil
}

// projectFenced checks the token of a hold of project r: a shared
// hold's against the exclusive holds' (shared holders come in any order),
// an exclusive hold's against every hold's; it records the token.
func (s *PlanStore) projectFenced(r coordinator.Resource, token uint64, exclusive bool) error {
	bar := s.fence[r] // the highest exclusive token
	if exclusive {
		bar = max(bar, s.projMax[r])
	}
	if token < bar {
		s.rejected++
		return fmt.Errorf("%w: %s token %d, store has seen %d", ErrStale, r, token, bar)
	}
	s.projMax[r] = max(s.projMax[r], token)
	if exclusive {
		s.fence[r] = token
	}
	return nil
}

// LeaveProject removes owner's hold of project.
func (s *PlanStore) LeaveProject(project, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.proj.holders[project], owner)
	if len(s.proj.holders[project]) == 0 {
		delete(s.proj.holders, project)
	}
}

// ProjectJob is a project-wide operation (rescheduling every plan of
// project), a write fenced by the exclusive project lease's token. It
// checks that no plan of the project is held meanwhile.
func (s *PlanStore) ProjectJob(owner string, token uint64, project string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := coordinator.Project(project)
	if err := s.projectFenced(r, token, true); err != nil {
		return err
	}
	if others := s.livePlanHolders(project, owner); len(others) > 0 {
		s.proj.exclusiveOverlaps++
		s.violation("%s ran a job on %s (token %d) while %v held its plans", owner, r, token, others)
	}
	s.accepted++
	s.proj.jobs++
	return nil
}

// checkProjectOfPlan records a violation when plan id's project has a
// live exclusive holder other than owner: called as a plan is entered.
func (s *PlanStore) checkProjectOfPlan(id, owner string) {
	p, ok := s.plans[id]
	if !ok {
		return
	}
	if excl, _ := s.liveHolds(p.Project, owner); len(excl) > 0 {
		s.proj.exclusiveOverlaps++
		s.violation("%s entered plan %s while %v held project %s exclusive", owner, id, excl, p.Project)
	}
}

// Projects returns the projects' ids.
func (s *PlanStore) Projects() []string { return s.projects }
