package demo

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// worker is one of the demo's workers: a process of its own in a real
// deployment, with its own coordinator, owner name and store connection.
type worker struct {
	id     int
	owner  string
	c      *coordinator.Coordinator
	store  *workerStore
	plans  *PlanStore
	cfg    *Config
	rnd    *rand.Rand
	owners []string // every worker's owner, for subplan assignment
	root   context.Context
	chaos  *chaos

	lost, stale, pauses int
	termsLost           int // terms of the scheduler office lost (scheduler.go)
}

// chaos decides when workers freeze: not in the last stretch of the demo,
// so that the leases lost have expired when it checks for leftovers.
type chaos struct {
	mu    sync.Mutex
	until time.Time // no freeze starts after this
	on    bool
}

func (ch *chaos) allow(r *rand.Rand) bool {
	if ch == nil || !ch.on {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return time.Now().Before(ch.until) && r.Float64() < chaosProbability
}

// chaosProbability is the chance that a worker freezes before a subplan
// step's write.
const chaosProbability = 0.15

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter returns a duration in [lo, hi) times the TTL.
func (w *worker) jitter(lo, hi float64) time.Duration {
	return time.Duration((lo + w.rnd.Float64()*(hi-lo)) * float64(w.cfg.TTL))
}

// projectJobChance is the chance that a worker's next piece of work is
// a project-wide job rather than a plan transition.
const projectJobChance = 0.04

// run drives plans, and now and then runs a project-wide job, until ctx
// ends.
func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		var err error
		if w.rnd.Float64() < projectJobChance {
			err = w.projectJob(ctx)
		} else {
			id, ok := w.pick()
			if !ok {
				if !sleep(ctx, 10*time.Millisecond) {
					return
				}
				continue
			}
			err = w.transition(ctx, id)
		}
		switch {
		case err == nil, errors.Is(err, coordinator.ErrConflict):
		case errors.Is(err, coordinator.ErrLeaseLost):
			w.lost++
		case errors.Is(err, ErrStale):
			w.stale++
		case ctx.Err() != nil:
			return
		default:
			w.cfg.Log.Warn().Err(err).Str("owner", w.owner).Msg("demo: work failed")
		}
		// a short pause between plans, as a real worker has other work
		if !sleep(ctx, w.jitter(0.005, 0.02)) {
			return
		}
	}
}

// transition makes the next transition of plan id. It holds the plan's
// project shared, capped at PlansPerProject, and the plan exclusive, in
// one HoldAll: a project-wide job (exclusive) is kept out, the project's
// other plans are not, and no more than the cap of its plans move at once.
func (w *worker) transition(ctx context.Context, id string) error {
	p, ok := w.plans.Get(id)
	if !ok {
		return nil // completed meanwhile
	}
	var opts []coordinator.AcquireOption
	if w.rnd.Float64() < 0.25 {
		// sometimes wait for the holder rather than look elsewhere
		opts = append(opts, coordinator.Wait(w.jitter(0.1, 0.3)))
	}
	r := coordinator.Plan(id)
	claims := []coordinator.Claim{
		{Resource: coordinator.Project(p.Project), Mode: coordinator.ModeShared, Permits: w.cfg.PlansPerProject},
		{Resource: r, Mode: coordinator.ModeExclusive},
	}
	return w.c.HoldAll(ctx, w.owner, claims, func(hctx context.Context, ls []coordinator.Lease) error {
		if err := w.plans.EnterProject(hctx, p.Project, w.owner, ls[0].Token, false, w.cfg.PlansPerProject); err != nil {
			return err
		}
		defer w.plans.LeaveProject(p.Project, w.owner)
		if err := w.plans.Enter(hctx, r, w.owner, ls[1].Token); err != nil {
			return err
		}
		defer w.plans.Leave(r, w.owner)
		return w.advance(hctx, ls[1], id)
	}, opts...)
}

// projectJob is a project-wide operation (archiving, rescheduling every
// plan): it holds a project exclusive, waiting a while for the plan
// transitions that hold it shared, and writes to it with its token.
func (w *worker) projectJob(ctx context.Context) error {
	projects := w.plans.Projects()
	project := projects[w.rnd.IntN(len(projects))]
	return w.c.Hold(ctx, coordinator.Project(project), w.owner, func(hctx context.Context, l coordinator.Lease) error {
		if err := w.plans.EnterProject(hctx, project, w.owner, l.Token, true, 0); err != nil {
			return err
		}
		defer w.plans.LeaveProject(project, w.owner)
		if !sleep(hctx, w.jitter(0.05, 0.15)) { // the job's work
			return hctx.Err()
		}
		return w.plans.ProjectJob(w.owner, l.Token, project)
	}, coordinator.Wait(w.jitter(0.2, 0.5)))
}

// pick chooses a plan: half of the time a running one (resuming stalled
// work first, as a real system would), otherwise any open plan.
func (w *worker) pick() (string, bool) {
	var ids []string
	if w.rnd.Float64() < 0.5 {
		ids = w.plans.OpenIn(Running)
	}
	if len(ids) == 0 {
		ids = w.plans.Open()
	}
	if len(ids) == 0 {
		return "", false
	}
	return ids[w.rnd.IntN(len(ids))], true
}

// advance makes the next transition of plan id under lease l.
func (w *worker) advance(ctx context.Context, l coordinator.Lease, id string) error {
	p, ok := w.plans.Get(id)
	if !ok {
		return nil
	}
	switch p.State {
	case Draft:
		if !sleep(ctx, w.jitter(0.005, 0.02)) { // validate the draft
			return ctx.Err()
		}
		return w.plans.Advance(w.owner, l.Token, id, Draft, Queued)
	case Queued:
		if !w.plans.Assigned(id) || ctx.Err() != nil {
			return ctx.Err() // the elected scheduler has not assigned its subplans yet
		}
		return w.plans.Advance(w.owner, l.Token, id, Queued, Running)
	case Running:
		return w.runPhase(ctx, l, p)
	}
	return nil
}

// runPhase is the long phase: the subplan steps, each a fenced write made
// under a re-entrant hold of the plan (as a helper that locks for itself
// would), with the lease kept alive by Hold's renewal in between. Then the
// plan is completed.
func (w *worker) runPhase(ctx context.Context, l coordinator.Lease, p Plan) error {
	r := coordinator.Plan(p.ID)
	for step := p.Progress + 1; step <= p.Subplans; step++ {
		if !sleep(ctx, w.jitter(0.2, 0.5)) { // the subplan's work
			return ctx.Err()
		}
		if _, err := w.c.Acquire(ctx, r, w.owner); err != nil {
			return err
		}
		if w.chaos.allow(w.rnd) {
			w.freeze()
			// the write was in flight when the process froze: it goes out
			// now, without a look at the (cancelled) context
			err := w.plans.Step(w.owner, l.Token, p.ID, step)
			w.release(r)
			if err != nil {
				return err
			}
			continue
		}
		if ctx.Err() != nil {
			w.release(r)
			return ctx.Err()
		}
		err := w.plans.Step(w.owner, l.Token, p.ID, step)
		w.release(r)
		if err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return w.plans.Advance(w.owner, l.Token, p.ID, Running, Completed)
}

// freeze stops the worker's store calls and work for longer than the TTL,
// as a stop-the-world pause would.
func (w *worker) freeze() {
	w.pauses++
	w.store.freeze()
	t := time.NewTimer(w.jitter(1.4, 1.9))
	select {
	case <-t.C:
	case <-w.root.Done():
		t.Stop()
	}
	w.store.thaw()
}

func (w *worker) release(r coordinator.Resource) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.root), 5*time.Second)
	defer cancel()
	_, _ = w.c.Release(ctx, r, w.owner) // ErrNotHeld after a loss: nothing to release
}
