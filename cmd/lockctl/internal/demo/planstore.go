package demo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/lockcoord/lockcoord/coordinator"
)

// State is a plan's lifecycle state.
type State string

// The lifecycle of a plan.
const (
	Draft     State = "draft"
	Queued    State = "queued"
	Running   State = "running"
	Completed State = "completed"
)

// ErrStale is the plan store's refusal of a write whose fencing token is
// lower than one it has already seen for the resource.
var ErrStale = errors.New("demo: stale fencing token")

// errOutOfOrder is a write that found the plan in another state than its
// writer read under the same lease: a lost update.
var errOutOfOrder = errors.New("demo: plan changed under its lease")

// Plan is a plan as the store holds it.
type Plan struct {
	ID       string
	Project  string
	State    State
	Progress int // subplans done while running
	Subplans int
	Token    uint64 // the fencing token of the last accepted write
}

// PlanStore is the protected resource of the demo: plans and projects in
// memory, written only with a fencing token. It also watches the
// critical sections, to check that no two live holders are ever in one.
type PlanStore struct {
	mu        sync.Mutex
	plans     map[string]*Plan
	open      []string            // ids of plans not completed, in creation order
	byProject map[string][]string // open plan ids by project
	assigned  map[string][]string // plan id -> the workers of its subplans
	fence     map[coordinator.Resource]uint64
	projMax   map[coordinator.Resource]uint64 // the highest token of any hold of a project
	proj      projectWatch
	inside    map[coordinator.Resource]map[string]context.Context
	projects  []string
	subplans  int
	next      int

	accepted, rejected, completed, transitions int
	overlaps, outOfOrder                       int
	terms, handOvers                           int
	leader                                     string // the scheduler of the last term
	violations                                 []string
}

// NewPlanStore returns a store with plans plans spread over projects
// projects, each with subplans subplans, all in draft.
func NewPlanStore(plans, projects, subplans int) *PlanStore {
	s := &PlanStore{plans: map[string]*Plan{}, byProject: map[string][]string{}, assigned: map[string][]string{},
		fence: map[coordinator.Resource]uint64{}, projMax: map[coordinator.Resource]uint64{}, inside: map[coordinator.Resource]map[string]context.Context{},
		subplans: subplans}
	for i := range projects {
		s.projects = append(s.projects, "proj-"+strconv.Itoa(i+1))
	}
	for i := range plans {
		s.addPlan(s.projects[i%projects])
	}
	return s
}

func (s *PlanStore) addPlan(project string) {
	s.next++
	id := project + "." + strconv.Itoa(s.next)
	s.plans[id] = &Plan{ID: id, Project: project, State: Draft, Subplans: s.subplans}
	s.open = append(s.open, id)
	s.byProject[project] = append(s.byProject[project], id)
}

func (s *PlanStore) violation(format string, args ...any) {
	if len(s.violations) < 20 {
		s.violations = append(s.violations, fmt.Sprintf(format, args...))
	}
}

// live reports the owners other than owner inside r's critical section
// whose context is live: holders that have not been told of a loss.
func (s *PlanStore) live(r coordinator.Resource, owner string) []string {
	var others []string
	for o, ctx := range s.inside[r] {
		if o != owner && ctx.Err() == nil {
			others = append(others, o)
		}
	}
	sort.Strings(others)
	return others
}

// fenced checks token against the highest seen for r and records it.
func (s *PlanStore) fenced(r coordinator.Resource, token uint64) error {
	if token < s.fence[r] {
		s.rejected++
		return fmt.Errorf("%w: %s token %d, store has seen %d", ErrStale, r, token, s.fence[r])
	}
	s.fence[r] = token
	return nil
}

// Enter records owner in r's critical section with the lease's token and
// context (cancelled when the lease is lost). It registers the token, so
// that from then on writes of older holders are rejected.
func (s *PlanStore) Enter(ctx context.Context, r coordinator.Resource, owner string, token uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fenced(r, token); err != nil {
		return err
	}
	if others := s.live(r, owner); len(others) > 0 {
		s.overlaps++
		s.violation("%s entered %s (token %d) while %v held it", owner, r, token, others)
	}
	if r.Type == "plan" {
		s.checkProjectOfPlan(r.ID, owner)
	}
	if s.inside[r] == nil {
		s.inside[r] = map[string]context.Context{}
	}
	s.inside[r][owner] = ctx
	return nil
}

// Leave removes owner from r's critical section.
func (s *PlanStore) Leave(r coordinator.Resource, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inside[r], owner)
	if len(s.inside[r]) == 0 {
		delete(s.inside, r)
	}
}

// write applies fn to the store if token is not stale for r.
func (s *PlanStore) write(r coordinator.Resource, owner string, token uint64, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fenced(r, token); err != nil {
		return err
	}
	if others := s.live(r, owner); len(others) > 0 {
		s.overlaps++
		s.violation("%s wrote %s (token %d) while %v held it", owner, r, token, others)
	}
	if err := fn(); err != nil {
		return err
	}
	s.accepted++
	return nil
}

// Get returns a copy of plan id.
func (s *PlanStore) Get(id string) (Plan, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.plans[id]
	if !ok {
		return Plan{}, false
	}
	return *p, true
}

// Open returns the ids of the plans not completed.
func (s *PlanStore) Open() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.open...)
}

// OpenIn returns the open plans in state st.
func (s *PlanStore) OpenIn(st State) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.open {
		if s.plans[id].State == st {
			out = append(out, id)
		}
	}
	return out
}

// Assigned reports whether plan id's subplans have workers.
func (s *PlanStore) Assigned(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.assigned[id]) > 0
}

// Advance moves plan id from one state to the next, with the plan lease's
// token. A plan found in another state than from is a lost update.
func (s *PlanStore) Advance(owner string, token uint64, id string, from, to State) error {
	r := coordinator.Plan(id)
	return s.write(r, owner, token, func() error {
		p := s.plans[id]
		if p.State != from || (to == Completed && p.Progress != p.Subplans) {
			s.outOfOrder++
			s.violation("%s moved %s %s->%s (token %d) but found it %s with %d/%d subplans done",
				owner, id, from, to, token, p.State, p.Progress, p.Subplans)
			return errOutOfOrder
		}
		p.State, p.Token = to, token
		s.transitions++
		if to == Completed {
			s.completed++
			s.removeOpen(id)
			s.addPlan(p.Project) // new work keeps coming
		}
		return nil
	})
}

// Step records subplan step (1-based) of running plan id as done.
func (s *PlanStore) Step(owner string, token uint64, id string, step int) error {
	r := coordinator.Plan(id)
	return s.write(r, owner, token, func() error {
		p := s.plans[id]
		if p.State != Running || p.Progress != step-1 {
			s.outOfOrder++
			s.violation("%s did step %d of %s (token %d) but found it %s at step %d", owner, step, id, token, p.State, p.Progress)
			return errOutOfOrder
		}
		p.Progress, p.Token = step, token
		return nil
	})
}

// SchedulerOffice is the office of the demo's elected scheduler: its
// term fences the assignments of subplans.
var SchedulerOffice = coordinator.Election(SchedulerElection)

// SchedulerElection is the election of the demo's scheduler.
const SchedulerElection = "demo-scheduler"

// Assign records the workers of the subplans of queued plan id, with the
// term of the elected scheduler (the office's fencing token); it reports
// whether it assigned them (false: already assigned, or no longer
// queued).
func (s *PlanStore) Assign(owner string, term uint64, id string, workers []string) (bool, error) {
	done := false
	err := s.write(SchedulerOffice, owner, term, func() error {
		p := s.plans[id]
		if p.State != Queued || len(s.assigned[id]) > 0 {
			return nil
		}
		s.assigned[id] = workers
		done = true
		return nil
	})
	return done, err
}

// Elected records a term of the scheduler office that owner began: a
// hand-over when the last term was another owner's.
func (s *PlanStore) Elected(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.terms++
	if s.leader != "" && s.leader != owner {
		s.handOvers++
	}
	s.leader = owner
}

// Queued returns the queued plans without assigned subplans, of every
// project.
func (s *PlanStore) Queued() []string {
	var out []string
	for _, p := range s.projects {
		out = append(out, s.QueuedIn(p)...)
	}
	return out
}

// QueuedIn returns the queued plans of project without assigned subplans.
func (s *PlanStore) QueuedIn(project string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.byProject[project] {
		if p := s.plans[id]; p.State == Queued && len(s.assigned[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

func (s *PlanStore) removeOpen(id string) {
	for i, x := range s.open {
		if x == id {
			s.open = append(s.open[:i], s.open[i+1:]...)
			break
		}
	}
	p := s.plans[id].Project
	ids := s.byProject[p]
	for i, x := range ids {
		if x == id {
			s.byProject[p] = append(ids[:i], ids[i+1:]...)
			break
		}
	}
	delete(s.assigned, id)
}

// StoreStats are the plan store's counts.
type StoreStats struct {
	Accepted    int // fenced writes applied
	Rejected    int // fenced writes (and entries) refused as stale
	Completed   int // plans completed
	Transitions int // state transitions applied
	Overlaps    int // moments two live holders were in one critical section
	OutOfOrder  int // writes that found the plan changed under their lease
	Terms       int // terms of the scheduler office
	HandOvers   int // terms that began with another scheduler than the last
	ProjectJobs int // project-wide jobs done under an exclusive project lease
	MaxHolders  int // most live shared holders of one project at once
	// ExclusiveOverlaps: moments an exclusive project holder and a holder
	// of the project or of one of its plans were alive at once;
	// CapOverflows: shared holds beyond a project's permits
	ExclusiveOverlaps, CapOverflows int
	Violations                      []string // the first violations, described
}

// Stats returns the store's counts.
func (s *PlanStore) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StoreStats{Accepted: s.accepted, Rejected: s.rejected, Completed: s.completed, Transitions: s.transitions,
		Overlaps: s.overlaps, OutOfOrder: s.outOfOrder, Terms: s.terms, HandOvers: s.handOvers, Violations: append([]string(nil), s.violations...),
		ProjectJobs: s.proj.jobs, MaxHolders: s.proj.maxHolders, ExclusiveOverlaps: s.proj.exclusiveOverlaps,
		CapOverflows: s.proj.capOverflows}
}
