package demo

import (
	"context"
	"errors"

	"github.com/lockcoord/lockcoord/coordinator"
)

// campaign runs for the scheduler office until ctx ends: every worker is
// a candidate, and only the leader assigns subplans. A term ends when the
// leader loses the office (its renewals failed, as in a pause longer than
// the TTL) or ctx ends; the worker then campaigns again.
func (w *worker) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.c.Lead(ctx, SchedulerElection, w.owner, w.owner, w.schedule)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, coordinator.ErrLeaseLost):
			w.termsLost++
		case errors.Is(err, ErrStale):
			w.stale++
		case err != nil:
			w.cfg.Log.Warn().Err(err).Str("owner", w.owner).Msg("demo: scheduling failed")
		}
		if !sleep(ctx, w.jitter(0.005, 0.02)) {
			return
		}
	}
}

// schedule is the leader's work for one term: it assigns the subplans of
// the queued plans, each assignment a write fenced by the term, until the
// term ends. With chaos the leader may freeze before a write for longer
// than the TTL: a new term begins meanwhile, and the write it had in
// flight is refused by the plan store as stale.
func (w *worker) schedule(ctx context.Context, term *coordinator.Term) error {
	if err := w.plans.Enter(ctx, SchedulerOffice, w.owner, term.Token); err != nil {
		return err
	}
	defer w.plans.Leave(SchedulerOffice, w.owner)
	w.plans.Elected(w.owner)
	for {
		for _, id := range w.plans.Queued() {
			subs := make([]string, w.cfg.Subplans)
			for i := range subs {
				subs[i] = w.owners[w.rnd.IntN(len(w.owners))]
			}
			if w.chaos.allow(w.rnd) {
				w.freeze()
				// the write was in flight when the process froze: it goes
				// out now, without a look at the (cancelled) context
				_, err := w.plans.Assign(w.owner, term.Token, id, subs)
				return err
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if _, err := w.plans.Assign(w.owner, term.Token, id, subs); err != nil {
				return err
			}
		}
		if !sleep(ctx, w.jitter(0.01, 0.03)) { // the next round of scheduling
			return context.Cause(ctx)
		}
	}
}
