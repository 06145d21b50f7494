package features_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cucumber/godog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// Real-time bounds of the lifecycle steps. Keep-alives, waits and hand-offs
// run on the worker's clock; these bound how long a step waits for them to
// happen. Nothing waits out a TTL: leases expire only when the scenario
// moves Redis's clock.
const (
	eventually    = 5 * time.Second        // for an event that must happen
	stillWaiting  = 200 * time.Millisecond // how long a waiter is watched to still wait
	workDuration  = 5 * time.Millisecond   // the work of one turn
	pollEvery     = 2 * time.Millisecond
	takeTurnsTime = 30 * time.Second
)

// job is a worker's work running under Hold.
type job struct {
	owner  string
	r      coordinator.Resource
	lease  coordinator.Lease // the lease fn was given
	ttl    time.Duration
	cancel context.CancelFunc // the worker's own context (a termination signal)
	finish chan struct{}      // closed to tell fn to return

	mu      sync.Mutex
	cause   error     // context.Cause of fn's context once it ended
	endedAt time.Time // when fn saw its context end

	done   chan struct{} // closed when Hold returned
	result error         // Hold's return, once done
}

// interruption is how fn's context ended.
type interruption struct {
	cause error     // context.Cause
	at    time.Time // when fn saw it
}

// interrupted reports whether fn's context ended, and how.
func (j *job) interrupted() (interruption, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return interruption{j.cause, j.endedAt}, !j.endedAt.IsZero()
}

// keeper is a lease kept alive by KeepAlive outside Hold.
type keeper struct {
	ka  *coordinator.KeepAlive
	ttl time.Duration
}

// waiter is an Acquire with the Wait option running in the background.
type waiter struct {
	owner string
	r     coordinator.Resource
	done  chan struct{}
	lease coordinator.Lease
	err   error
}

// turns records workers taking turns on one resource.
type turns struct {
	mu      sync.Mutex
	active  int
	overlap int // times a worker started while another was working
	by      map[string]int
	tokens  []uint64 // in the order of the turns
	errs    []error
}

// lifecycle is the part of a scenario's world that runs in the background.
type lifecycle struct {
	jobs      map[string]*job
	keepers   map[string]*keeper
	waiters   map[string]*waiter
	turns     *turns
	changedAt time.Time // when the scenario last took a lease away
}

func (l *lifecycle) resetLifecycle() {
	*l = lifecycle{jobs: map[string]*job{}, keepers: map[string]*keeper{}, waiters: map[string]*waiter{}}
}

// stopBackground stops keep-alives, finishes jobs and waits for them and
// for the waiters (which end when their coordinators close).
func (w *world) stopBackground() {
	for _, k := range w.keepers {
		k.ka.Stop()
	}
	for _, j := range w.jobs {
		select {
		case <-j.finish:
		default:
			close(j.finish)
		}
	}
}

func (w *world) awaitBackground() error {
	var errs []error
	for key, j := range w.jobs {
		select {
		case <-j.done:
		case <-time.After(eventually):
			errs = append(errs, fmt.Errorf("the work %s did not end", key))
		}
		j.cancel()
	}
	for key, wt := range w.waiters {
		select {
		case <-wt.done:
		case <-time.After(eventually):
			errs = append(errs, fmt.Errorf("the wait %s did not end", key))
		}
	}
	return errors.Join(errs...)
}

// ---- configuration -----------------------------------------------------

func (w *world) renewEvery(d string) error {
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	if len(w.workers) > 0 || w.operator != nil {
		return errors.New("configure the coordinators before any worker starts")
	}
	w.opts = append(w.opts, coordinator.WithRenewInterval(dd))
	return nil
}

// ---- work under Hold -----------------------------------------------------

func (w *world) startsWork(owner, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	key := holdKey(name, r)
	if _, ok := w.jobs[key]; ok {
		return fmt.Errorf("worker %q already works on %s", name, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{owner: name, r: r, cancel: cancel, finish: make(chan struct{}), done: make(chan struct{})}
	started := make(chan coordinator.Lease, 1)
	c := w.worker(name)
	go func() {
		defer close(j.done)
		j.result = c.Hold(ctx, r, name, func(ctx context.Context, l coordinator.Lease) error {
			started <- l
			select {
			case <-ctx.Done():
				j.mu.Lock()
				j.cause, j.endedAt = context.Cause(ctx), time.Now()
				j.mu.Unlock()
				return ctx.Err()
			case <-j.finish:
				return nil
			}
		})
	}()
	w.jobs[key] = j
	select {
	case l := <-started:
		j.lease = l
		j.ttl = l.ExpiresAt.Sub(l.AcquiredAt)
		if l.Token > w.maxToken[r] {
			w.maxToken[r] = l.Token
			w.tokens[key] = l.Token
		}
		return nil
	case <-j.done:
		return fmt.Errorf("worker %q could not start work on %s: %w", name, r, j.result)
	case <-time.After(eventually):
		return fmt.Errorf("worker %q did not start work on %s", name, r)
	}
}

func (w *world) job(owner, t, id string) (*job, error) {
	name, err := unquote(owner)
	if err != nil {
		return nil, err
	}
	r, err := resource(t, id)
	if err != nil {
		return nil, err
	}
	j, ok := w.jobs[holdKey(name, r)]
	if !ok {
		return nil, fmt.Errorf("worker %q never worked on %s", name, r)
	}
	return j, nil
}

func (w *world) stillWorking(owner, t, id string) error {
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	if in, ok := j.interrupted(); ok {
		return fmt.Errorf("the work of %q on %s was stopped: %w", j.owner, j.r, in.cause)
	}
	select {
	case <-j.done:
		return fmt.Errorf("the work of %q on %s ended: %w", j.owner, j.r, j.result)
	default:
	}
	return nil
}

func (w *world) finishes(owner, t, id string) error {
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	close(j.finish)
	select {
	case <-j.done:
		return nil
	case <-time.After(eventually):
		return fmt.Errorf("the work of %q on %s did not end", j.owner, j.r)
	}
}

func (w *world) signalled(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	n := 0
	for _, j := range w.jobs {
		if j.owner == name {
			j.cancel()
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("worker %q has no work running", name)
	}
	return nil
}

// workEnded waits for Hold to return.
func (w *world) workEnded(j *job) error {
	select {
	case <-j.done:
		return nil
	case <-time.After(eventually):
		return fmt.Errorf("the work of %q on %s did not end", j.owner, j.r)
	}
}

func (w *world) workSucceeded(owner, t, id string) error {
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	if err := w.workEnded(j); err != nil {
		return err
	}
	if j.result != nil {
		return fmt.Errorf("the work of %q on %s ended with %w", j.owner, j.r, j.result)
	}
	if in, ok := j.interrupted(); ok {
		return fmt.Errorf("the work of %q on %s was interrupted: %w", j.owner, j.r, in.cause)
	}
	return nil
}

func (w *world) toldLost(owner, t, id, within string) error {
	d, err := parseDur(within)
	if err != nil {
		return err
	}
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	var in interruption
	if err := poll(func() (err error) {
		if i, ok := j.interrupted(); ok {
			in = i
			return nil
		}
		return testutil.ErrNotYet
	}); err != nil {
		return fmt.Errorf("the work of %q on %s was not told of any loss", j.owner, j.r)
	}
	cause := in.cause
	if !errors.Is(cause, coordinator.ErrLeaseLost) {
		return fmt.Errorf("the work of %q on %s was stopped with %w, want ErrLeaseLost", j.owner, j.r, cause)
	}
	le, ok := errors.AsType[*coordinator.LostError](cause)
	if !ok {
		return fmt.Errorf("%w is not a *LostError", cause)
	}
	if le.Resource != j.r || le.Owner != j.owner || le.Token != j.lease.Token {
		return fmt.Errorf("the loss names %s of %q with token %d, want %s of %q with token %d",
			le.Resource, le.Owner, le.Token, j.r, j.owner, j.lease.Token)
	}
	if !errors.Is(cause, coordinator.ErrNotHeld) && !errors.Is(cause, coordinator.ErrExpired) {
		return fmt.Errorf("the loss gives another reason, want what Redis said (ErrNotHeld or ErrExpired): %w", le.Reason)
	}
	if late := in.at.Sub(w.changedAt); late > d {
		return fmt.Errorf("the worker was told %s after its lease was taken away, want within %s", late, d)
	}
	return nil
}

func (w *world) workEndsLost(owner, t, id string) error {
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	if err := w.workEnded(j); err != nil {
		return err
	}
	if !errors.Is(j.result, coordinator.ErrLeaseLost) {
		return fmt.Errorf("the work of %q on %s ended with %w, want ErrLeaseLost", j.owner, j.r, j.result)
	}
	return nil
}

func (w *world) workStoppedBy(owner, t, id, why string) error {
	j, err := w.job(owner, t, id)
	if err != nil {
		return err
	}
	if err := w.workEnded(j); err != nil {
		return err
	}
	in, ok := j.interrupted()
	if !ok {
		return fmt.Errorf("the work of %q on %s was never interrupted (Hold returned %w)", j.owner, j.r, j.result)
	}
	cause := in.cause
	want := map[string]error{
		"the worker shuts down":      coordinator.ErrClosed,
		"the worker's context ended": context.Canceled,
	}[why]
	if want == nil {
		return fmt.Errorf("unknown reason %q", why)
	}
	if !errors.Is(cause, want) || errors.Is(cause, coordinator.ErrLeaseLost) {
		return fmt.Errorf("the work of %q on %s was stopped with %w, want %w", j.owner, j.r, cause, want)
	}
	if !errors.Is(j.result, context.Canceled) || errors.Is(j.result, coordinator.ErrLeaseLost) {
		return fmt.Errorf("the Hold returned %w, want the work's context.Canceled alone", j.result)
	}
	return nil
}

// ---- keep-alives outside Hold ---------------------------------------------

func (w *world) holdsAndKeepsAlive(owner, t, id string) error {
	if err := w.givenHolds(owner, t, id); err != nil {
		return err
	}
	l := w.lastLease
	ka := w.worker(w.lastOwner).KeepAlive(context.Background(), l)
	w.keepers[holdKey(w.lastOwner, w.lastRes)] = &keeper{ka: ka, ttl: l.ExpiresAt.Sub(l.AcquiredAt)}
	return nil
}

func (w *world) keeper(owner, t, id string) (*keeper, error) {
	name, err := unquote(owner)
	if err != nil {
		return nil, err
	}
	r, err := resource(t, id)
	if err != nil {
		return nil, err
	}
	k, ok := w.keepers[holdKey(name, r)]
	if !ok {
		return nil, fmt.Errorf("worker %q never kept %s alive", name, r)
	}
	return k, nil
}

func (w *world) stopsKeeping(owner, t, id string) error {
	k, err := w.keeper(owner, t, id)
	if err != nil {
		return err
	}
	k.ka.Stop()
	return nil
}

func (w *world) keepAliveEnded(owner, t, id string) error {
	k, err := w.keeper(owner, t, id)
	if err != nil {
		return err
	}
	select {
	case <-k.ka.Done():
	case <-time.After(eventually):
		return errors.New("the keep-alive is still running")
	}
	if err := k.ka.Err(); err != nil {
		return fmt.Errorf("the keep-alive ended with %w", err)
	}
	return nil
}

func (w *world) keepAliveEndedByShutdown(owner, t, id string) error {
	k, err := w.keeper(owner, t, id)
	if err != nil {
		return err
	}
	select {
	case <-k.ka.Done():
	case <-time.After(eventually):
		return errors.New("the keep-alive is still running")
	}
	if err := k.ka.Err(); !errors.Is(err, coordinator.ErrClosed) {
		return fmt.Errorf("the keep-alive ended with %w, want ErrClosed", err)
	}
	return nil
}

func (w *world) keepAliveReports(owner, t, id, d string) error {
	k, err := w.keeper(owner, t, id)
	if err != nil {
		return err
	}
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	if got := k.ka.Lease().ExpiresAt; !w.fromNow(got, dd) {
		return fmt.Errorf("the keep-alive reports an expiry %s from now, want %s", got.Sub(w.clock()), dd)
	}
	return nil
}

// passWhileKeptAlive moves Redis's clock, then waits until every running
// keep-alive (of a Hold or a KeepAlive) has renewed its lease at the new
// time: Redis shows it expiring a full TTL from now.
func (w *world) passWhileKeptAlive(d string) error {
	if err := w.pass(d); err != nil {
		return err
	}
	type kept struct {
		r   coordinator.Resource
		ttl time.Duration
		ka  *coordinator.KeepAlive
	}
	var all []kept
	for _, j := range w.jobs {
		if _, ok := j.interrupted(); !ok {
			all = append(all, kept{j.r, j.ttl, nil})
		}
	}
	for _, k := range w.keepers {
		select {
		case <-k.ka.Done():
			continue
		default:
		}
		all = append(all, kept{k.ka.Lease().Resource, k.ttl, k.ka})
	}
	if len(all) == 0 {
		return errors.New("no lease is being kept alive")
	}
	for _, k := range all {
		var l coordinator.Lease
		err := poll(func() (err error) {
			l, err = w.inspectRes(k.r)
			if k.ka != nil { // the keep-alive's own hold: one of several on a shared resource
				l, err = w.holdOf(k.r, k.ka.Lease().Owner)
			}
			if err == nil && w.fromNow(l.ExpiresAt, k.ttl) && (k.ka == nil || w.fromNow(k.ka.Lease().ExpiresAt, k.ttl)) {
				return nil
			}
			return errors.Join(testutil.ErrNotYet, err)
		})
		if err != nil {
			return fmt.Errorf("%s was not renewed to expire %s from now (Redis: %+v, %w)", k.r, k.ttl, l, err)
		}
	}
	return nil
}

// holdOf is owner's hold of r, as Holders reports it.
func (w *world) holdOf(r coordinator.Resource, owner string) (coordinator.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := w.observer().Holders(ctx, r)
	if err != nil {
		return coordinator.Lease{}, err
	}
	for _, l := range ls {
		if l.Owner == owner {
			return l, nil
		}
	}
	return coordinator.Lease{}, fmt.Errorf("%w: %q does not hold %s", coordinator.ErrNotHeld, owner, r)
}

// poll calls check until it returns nil, for up to eventually.
func poll(check func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	return testutil.Poll(ctx, pollEvery, check)
}

// ---- taking leases away ------------------------------------------------

func (w *world) operatorReleasesDuringWork(owner string) error {
	w.changedAt = time.Now()
	return w.releaseAll(owner)
}

func (w *world) redisLosesData() error {
	w.changedAt = time.Now()
	return w.redis.flushAll()
}

// ---- waiting ---------------------------------------------------------------

func (w *world) startsWaiting(owner, d, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	key := holdKey(name, r)
	if _, ok := w.waiters[key]; ok {
		return fmt.Errorf("worker %q already waits for %s", name, r)
	}
	wt := &waiter{owner: name, r: r, done: make(chan struct{})}
	c := w.worker(name)
	w.waiters[key] = wt
	go func() {
		defer close(wt.done)
		ctx, cancel := context.WithTimeout(context.Background(), dd+eventually)
		defer cancel()
		wt.lease, wt.err = c.Acquire(ctx, r, name, coordinator.Wait(dd))
	}()
	return nil
}

func (w *world) waitsFor(owner, d, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	w.acquire(name, r, coordinator.Wait(dd))
	return nil
}

func (w *world) waiter(owner, t, id string) (*waiter, error) {
	name, err := unquote(owner)
	if err != nil {
		return nil, err
	}
	r, err := resource(t, id)
	if err != nil {
		return nil, err
	}
	wt, ok := w.waiters[holdKey(name, r)]
	if !ok {
		return nil, fmt.Errorf("worker %q never waited for %s", name, r)
	}
	return wt, nil
}

func (w *world) isStillWaiting(owner, t, id string) error {
	wt, err := w.waiter(owner, t, id)
	if err != nil {
		return err
	}
	select {
	case <-wt.done:
		return fmt.Errorf("worker %q stopped waiting: lease %+v, error %w", wt.owner, wt.lease, wt.err)
	case <-time.After(stillWaiting):
		return nil
	}
}

// waitEnds waits for the waiter and makes its outcome the last request's.
func (w *world) waitEnds(wt *waiter, within time.Duration) error {
	select {
	case <-wt.done:
	case <-time.After(within):
		return fmt.Errorf("worker %q still waits for %s after %s", wt.owner, wt.r, within)
	}
	w.lastOwner, w.lastRes = wt.owner, wt.r
	w.lastPrevMax = w.maxToken[wt.r]
	w.lastLease, w.lastErr = wt.lease, wt.err
	if wt.err == nil && wt.lease.Token > w.maxToken[wt.r] {
		w.maxToken[wt.r] = wt.lease.Token
		w.tokens[holdKey(wt.owner, wt.r)] = wt.lease.Token
	}
	return nil
}

func (w *world) getsWithin(owner, t, id, d string) error {
	wt, err := w.waiter(owner, t, id)
	if err != nil {
		return err
	}
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	if err := w.waitEnds(wt, dd); err != nil {
		return err
	}
	return w.granted(owner, t, id, 1)
}

func (w *world) waitEndedByShutdown(owner, t, id string) error {
	wt, err := w.waiter(owner, t, id)
	if err != nil {
		return err
	}
	if err := w.waitEnds(wt, eventually); err != nil {
		return err
	}
	if !errors.Is(wt.err, coordinator.ErrConflict) {
		return fmt.Errorf("the wait ended with lease %+v, error %w, want a conflict", wt.lease, wt.err)
	}
	if !errors.Is(wt.err, coordinator.ErrClosed) {
		return fmt.Errorf("the wait ended with %w, want ErrClosed", wt.err)
	}
	return nil
}

// ---- taking turns ------------------------------------------------------------

func (w *world) takeTurns(n int, t, id, d string) error {
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	tr := &turns{by: map[string]int{}}
	w.turns = tr
	ctx, cancel := context.WithTimeout(context.Background(), takeTurnsTime)
	defer cancel()
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("t%d", i)
		c := w.worker(name)
		wg.Go(func() {
			err := c.Hold(ctx, r, name, func(ctx context.Context, l coordinator.Lease) error {
				tr.mu.Lock()
				tr.active++
				if tr.active > 1 {
					tr.overlap++
				}
				tr.by[name]++
				tr.tokens = append(tr.tokens, l.Token)
				tr.mu.Unlock()
				select { // the work
				case <-time.After(workDuration):
				case <-ctx.Done():
				}
				tr.mu.Lock()
				tr.active--
				tr.mu.Unlock()
				return context.Cause(ctx)
			}, coordinator.Wait(dd))
			if err != nil {
				tr.mu.Lock()
				tr.errs = append(tr.errs, fmt.Errorf("worker %q: %w", name, err))
				tr.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return nil
}

func (w *world) eachWorkedOnce(n int) error {
	tr := w.turns
	if tr == nil {
		return errors.New("no workers took turns")
	}
	if len(tr.errs) > 0 {
		return errors.Join(tr.errs...)
	}
	if len(tr.by) != n {
		return fmt.Errorf("%d workers had a turn, want %d", len(tr.by), n)
	}
	for name, k := range tr.by {
		if k != 1 {
			return fmt.Errorf("worker %q had %d turns", name, k)
		}
	}
	return nil
}

func (w *world) neverTwoAtATime() error {
	if w.turns == nil {
		return errors.New("no workers took turns")
	}
	if w.turns.overlap > 0 {
		return fmt.Errorf("%d times a worker started while another was working", w.turns.overlap)
	}
	return nil
}

func (w *world) tokensRise() error {
	if w.turns == nil {
		return errors.New("no workers took turns")
	}
	for i := 1; i < len(w.turns.tokens); i++ {
		if w.turns.tokens[i] <= w.turns.tokens[i-1] {
			return fmt.Errorf("turn %d got token %d, not above %d of the turn before", i+1, w.turns.tokens[i], w.turns.tokens[i-1])
		}
	}
	return nil
}

func (w *world) registerLifecycle(sc *godog.ScenarioContext) {
	sc.Given(step(`leases are renewed every {dur}`), w.renewEvery)
	sc.Given(step(`worker {q} is working on {type} {q} under a lease it keeps alive`), w.startsWork)
	sc.Given(step(`worker {q} holds {type} {q} and keeps it alive`), w.holdsAndKeepsAlive)
	sc.When(step(`{dur} pass(?:es)? while the leases are kept alive`), w.passWhileKeptAlive)
	sc.When(step(`worker {q} finishes its work on {type} {q}`), w.finishes)
	sc.When(step(`worker {q} is asked to terminate`), w.signalled)
	sc.When(step(`worker {q} stops keeping {type} {q} alive`), w.stopsKeeping)
	sc.When(step(`an operator takes every lease away from worker {q}`), w.operatorReleasesDuringWork)
	sc.When(step(`Redis loses all its data`), w.redisLosesData)
	sc.When(step(`worker {q} starts waiting up to {dur} for {type} {q}`), w.startsWaiting)
	sc.When(step(`worker {q} waits up to {dur} for {type} {q}`), w.waitsFor)
	sc.When(step(`(\d+) workers take turns on {type} {q}, each waiting up to {dur}`), w.takeTurns)

	sc.Then(step(`worker {q} is still working on {type} {q}`), w.stillWorking)
	sc.Then(step(`the work of worker {q} on {type} {q} ends without error`), w.workSucceeded)
	sc.Then(step(`worker {q} is told within {dur} that its lease on {type} {q} was lost`), func(owner, within, t, id string) error {
		return w.toldLost(owner, t, id, within)
	})
	sc.Then(step(`the work of worker {q} on {type} {q} ends with the lease lost`), w.workEndsLost)
	sc.Then(step(`the work of worker {q} on {type} {q} was stopped because (the worker shuts down|the worker's context ended)`), w.workStoppedBy)
	sc.Then(step(`the keep-alive of worker {q} on {type} {q} has ended without error`), w.keepAliveEnded)
	sc.Then(step(`the keep-alive of worker {q} on {type} {q} has ended because the worker shut down`), w.keepAliveEndedByShutdown)
	sc.Then(step(`the keep-alive of worker {q} on {type} {q} reports an expiry {dur} from now`), w.keepAliveReports)
	sc.Then(step(`worker {q} is still waiting for {type} {q}`), w.isStillWaiting)
	sc.Then(step(`worker {q} gets {type} {q} within {dur}`), w.getsWithin)
	sc.Then(step(`the wait of worker {q} for {type} {q} ends, refused, because the worker shuts down`), w.waitEndedByShutdown)
	sc.Then(step(`each of the (\d+) workers had exactly one turn`), w.eachWorkedOnce)
	sc.Then(step(`no two workers ever worked at the same time`), w.neverTwoAtATime)
	sc.Then(step(`every turn got a greater fencing token than the turn before`), w.tokensRise)
}
