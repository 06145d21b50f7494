package features_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cucumber/godog"

	"github.com/lockcoord/lockcoord/coordinator"
)

// electionWait bounds the wait for a term or an observed change: a
// failure bound, not a measure of speed.
const electionWait = 10 * time.Second

// electionSteps are the steps of elections.feature.
type electionSteps struct {
	w      *world
	terms  map[string]*campaign // by worker
	obs    <-chan coordinator.Leader
	seen   coordinator.Leader // the last leader the observer saw
	cancel context.CancelFunc
}

// campaign is a worker's Lead running in the background.
type campaign struct {
	started chan *coordinator.Term
	term    *coordinator.Term
	stop    chan struct{}
	done    chan error
}

func initElectionSteps(sc *godog.ScenarioContext, w *world) {
	e := &electionSteps{w: w}
	sc.Before(func(ctx context.Context, _ *godog.Scenario) (context.Context, error) {
		e.terms, e.obs, e.seen, e.cancel = map[string]*campaign{}, nil, coordinator.Leader{}, nil
		return ctx, nil
	})
	sc.After(func(ctx context.Context, _ *godog.Scenario, _ error) (context.Context, error) {
		return ctx, e.end()
	})
	sc.Given(step(`worker {q} leads election {q} with value {q}`), e.leads)
	sc.When(step(`worker {q} campaigns for election {q} with value {q}`), e.campaigns)
	sc.When(step(`worker {q} resigns from election {q}`), e.resigns)
	sc.When(step(`worker {q} proclaims {q} in election {q}`), e.proclaims)
	sc.Given(step(`an observer follows election {q}`), e.follows)
	sc.Then(step(`worker {q} leads election {q}`), e.isLeading)
	sc.Then(step(`worker {q}'s term is greater than worker {q}'s`), e.termAbove)
	sc.Then(step(`the leader of election {q} is worker {q} with value {q}`), e.leaderIs)
	sc.Then(step(`election {q} has no leader`), e.vacant)
	sc.Then(step(`the observer sees the office vacant`), e.seesVacant)
	sc.Then(step(`the observer sees worker {q} lead with value {q}( in the same term)?`), e.seesLeader)
}

// end stops the campaigns (their workers close after this) and the
// observer.
func (e *electionSteps) end() error {
	var errs []error
	for name, c := range e.terms {
		select {
		case <-c.stop:
		default:
			close(c.stop)
		}
		if err := <-c.done; err != nil && !errors.Is(err, coordinator.ErrConflict) {
			errs = append(errs, fmt.Errorf("worker %q's Lead: %w", name, err))
		}
	}
	if e.cancel != nil {
		e.cancel()
		for range e.obs { //nolint:revive // ends with its context
		}
	}
	return errors.Join(errs...)
}

// campaigns starts worker's Lead of election in the background.
func (e *electionSteps) campaigns(worker, election, value string) error {
	name, err := unquote(worker)
	if err != nil {
		return err
	}
	el, err := unquote(election)
	if err != nil {
		return err
	}
	v, err := unquote(value)
	if err != nil {
		return err
	}
	c := &campaign{started: make(chan *coordinator.Term, 1), stop: make(chan struct{}), done: make(chan error, 1)}
	e.terms[name] = c
	co := e.w.worker(name)
	go func() {
		c.done <- co.Lead(context.Background(), el, name, v, func(ctx context.Context, t *coordinator.Term) error {
			c.started <- t
			select {
			case <-c.stop:
				return nil
			case <-ctx.Done():
				return nil // Close ended the term
			}
		}, coordinator.Wait(time.Minute))
	}()
	return nil
}

// termOf waits until worker leads and returns its term.
func (e *electionSteps) termOf(worker string) (*coordinator.Term, error) {
	c := e.terms[worker]
	if c == nil {
		return nil, fmt.Errorf("worker %q does not campaign", worker)
	}
	if c.term != nil {
		return c.term, nil
	}
	select {
	case c.term = <-c.started:
		return c.term, nil
	case err := <-c.done:
		c.done <- err
		return nil, fmt.Errorf("worker %q's Lead ended before it led: %w", worker, err)
	case <-time.After(electionWait):
		return nil, fmt.Errorf("worker %q did not lead within %s", worker, electionWait)
	}
}

func (e *electionSteps) leads(worker, election, value string) error {
	if err := e.campaigns(worker, election, value); err != nil {
		return err
	}
	return e.isLeading(worker, election)
}

func (e *electionSteps) isLeading(worker, election string) error {
	name, err := unquote(worker)
	if err != nil {
		return err
	}
	t, err := e.termOf(name)
	if err != nil {
		return err
	}
	if el, _ := unquote(election); t.Election != el || t.Candidate != name {
		return fmt.Errorf("term %+v, want worker %q leading %q", t.Leader, name, el)
	}
	return nil
}

func (e *electionSteps) resigns(worker, _ string) error {
	name, err := unquote(worker)
	if err != nil {
		return err
	}
	c := e.terms[name]
	if c == nil {
		return fmt.Errorf("worker %q does not campaign", name)
	}
	close(c.stop)
	select {
	case err := <-c.done:
		c.done <- nil
		return err
	case <-time.After(electionWait):
		return fmt.Errorf("worker %q did not resign within %s", name, electionWait)
	}
}

func (e *electionSteps) proclaims(worker, value, _ string) error {
	name, err := unquote(worker)
	if err != nil {
		return err
	}
	v, err := unquote(value)
	if err != nil {
		return err
	}
	t, err := e.termOf(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), electionWait)
	defer cancel()
	return t.Proclaim(ctx, v)
}

func (e *electionSteps) termAbove(later, earlier string) error {
	a, err := unquote(later)
	if err != nil {
		return err
	}
	b, err := unquote(earlier)
	if err != nil {
		return err
	}
	ta, err := e.termOf(a)
	if err != nil {
		return err
	}
	tb, err := e.termOf(b)
	if err != nil {
		return err
	}
	if ta.Token <= tb.Token {
		return fmt.Errorf("term %d of %q is not above term %d of %q", ta.Token, a, tb.Token, b)
	}
	return nil
}

func (e *electionSteps) leaderIs(election, worker, value string) error {
	el, err := unquote(election)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), electionWait)
	defer cancel()
	l, err := e.w.observer().Leader(ctx, el)
	if err != nil {
		return err
	}
	if want, _ := unquote(worker); l.Candidate != want {
		return fmt.Errorf("leader %+v, want worker %q", l, want)
	}
	if want, _ := unquote(value); l.Value != want {
		return fmt.Errorf("leader %+v, want value %q", l, want)
	}
	return nil
}

func (e *electionSteps) vacant(election string) error {
	el, err := unquote(election)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), electionWait)
	defer cancel()
	if l, err := e.w.observer().Leader(ctx, el); !errors.Is(err, coordinator.ErrNotHeld) {
		return fmt.Errorf("Leader = %+v, %w; want ErrNotHeld", l, err)
	}
	return nil
}

func (e *electionSteps) follows(election string) error {
	el, err := unquote(election)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	obs, err := e.w.observer().Observe(ctx, el)
	if err != nil {
		cancel()
		return err
	}
	e.obs, e.cancel = obs, cancel
	return nil
}

// next returns the next leader the observer sees.
func (e *electionSteps) next() (coordinator.Leader, error) {
	select {
	case l, ok := <-e.obs:
		if !ok {
			return l, errors.New("the observer stopped")
		}
		if l.Gap || l.Token < e.seen.Token {
			return l, fmt.Errorf("the observer saw %+v after %+v: a gap or an older term", l, e.seen)
		}
		e.seen = l
		return l, nil
	case <-time.After(electionWait):
		return coordinator.Leader{}, fmt.Errorf("the observer saw no change within %s", electionWait)
	}
}

func (e *electionSteps) seesVacant() error {
	l, err := e.next()
	if err == nil && !l.Vacant() {
		err = fmt.Errorf("the observer saw %+v, want a vacancy", l)
	}
	return err
}

func (e *electionSteps) seesLeader(worker, value, sameTerm string) error {
	prev := e.seen
	l, err := e.next()
	if err != nil {
		return err
	}
	name, _ := unquote(worker)
	v, _ := unquote(value)
	switch {
	case l.Candidate != name || l.Value != v:
		return fmt.Errorf("the observer saw %+v, want worker %q with value %q", l, name, v)
	case sameTerm != "" && l.Token != prev.Token:
		return fmt.Errorf("the observer saw term %d, want the same term %d", l.Token, prev.Token)
	case sameTerm == "" && l.Token <= prev.Token:
		return fmt.Errorf("the observer saw term %d after %d, want a new term", l.Token, prev.Token)
	}
	return nil
}
