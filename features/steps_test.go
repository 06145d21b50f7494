package features_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Step text conventions. A quoted value ("w1", "42") is read like a Go
// string literal, so "w\t1" holds a tab and "\xff" an invalid byte. A
// resource is its type, bare, then its quoted id: plan "42". A duration is
// a whole number of milliseconds, seconds or minutes: 300 seconds.
const (
	q   = `"((?:[^"\\]|\\.)*)"`
	typ = `([^\s"]+)`
	dur = `(-?\d+ (?:milliseconds?|seconds?|minutes?))`
)

// step builds an anchored step pattern: {q} stands for a quoted value,
// {type} for a resource type, {dur} for a duration.
func step(s string) string {
	r := strings.NewReplacer("{q}", q, "{type}", typ, "{dur}", dur)
	return "^" + r.Replace(s) + "$"
}

// scenarioStart is the Redis clock (TIME) at the start of every scenario.
var scenarioStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// world is the state of one scenario. Each worker is a process of its own:
// a Coordinator of its own whose owner name is the worker's name. All of
// them share the scenario's Redis.
type world struct {
	redis  redisBackend
	client redis.UniversalClient
	store  *redisstore.Store
	now    time.Time // Redis's clock, moved only by the scenario

	opts     []coordinator.Option
	workers  map[string]*coordinator.Coordinator
	operator *coordinator.Coordinator // inspects and releases on behalf of an operator

	tokens   map[string]uint64               // owner|resource -> token of its fresh acquisition
	maxToken map[coordinator.Resource]uint64 // highest token seen per resource

	// the last request
	lastOwner    string
	lastRes      coordinator.Resource
	lastLease    coordinator.Lease
	lastErr      error
	lastPrevMax  uint64 // maxToken of lastRes before the request
	lastReleased int
	cmdsBefore   int
	cmdsAfter    int

	lifecycle // work, keep-alives and waits running in the background

	audit *audit // the Postgres mirror, for the scenarios that ask for it

	newBackend func(now time.Time) (redisBackend, error) // the Redis of each scenario
	storeOpts  []redisstore.Option                       // the options of the scenario's store
}

func holdKey(owner string, r coordinator.Resource) string { return owner + "|" + r.String() }

// reset gives the scenario a fresh Redis, clock and set of workers.
func (w *world) reset() error {
	rb, err := w.newBackend(scenarioStart)
	if err != nil {
		return err
	}
	*w = world{
		redis:      rb,
		client:     rb.client(),
		now:        scenarioStart,
		workers:    map[string]*coordinator.Coordinator{},
		tokens:     map[string]uint64{},
		maxToken:   map[coordinator.Resource]uint64{},
		newBackend: w.newBackend,
		storeOpts:  w.storeOpts,
	}
	w.store = redisstore.New(w.client, w.storeOpts...)
	w.resetLifecycle()
	return nil
}

// shutdown closes every coordinator, the client and the Redis server.
func (w *world) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.stopBackground()
	var errs []error
	for name, c := range w.workers {
		if err := c.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close worker %q: %w", name, err))
		}
	}
	if w.operator != nil {
		if err := w.operator.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close operator: %w", err))
		}
	}
	if err := w.awaitBackground(); err != nil {
		errs = append(errs, err)
	}
	if w.redis != nil {
		if err := w.redis.shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// worker returns the coordinator of the named worker, starting it on
// first use with the options the scenario configured.
func (w *world) worker(name string) *coordinator.Coordinator {
	c, ok := w.workers[name]
	if !ok {
		c = coordinator.New(w.store, w.opts...)
		w.workers[name] = c
	}
	return c
}

// observer returns the operator's coordinator, used to look at Redis.
func (w *world) observer() *coordinator.Coordinator {
	if w.operator == nil {
		w.operator = coordinator.New(w.store, w.opts...)
	}
	return w.operator
}

func unquote(s string) (string, error) {
	v, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		return "", fmt.Errorf("step value %q is not a valid quoted string: %w", s, err)
	}
	return v, nil
}

func resource(t, id string) (coordinator.Resource, error) {
	t, err := unquote(t)
	if err != nil {
		return coordinator.Resource{}, err
	}
	id, err = unquote(id)
	return coordinator.Resource{Type: t, ID: id}, err
}

var durRE = regexp.MustCompile(`^(-?\d+) (millisecond|second|minute)s?$`)

func parseDur(s string) (time.Duration, error) {
	m := durRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a duration: %q", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, err
	}
	unit := map[string]time.Duration{"millisecond": time.Millisecond, "second": time.Second, "minute": time.Minute}[m[2]]
	return time.Duration(n) * unit, nil
}

// do runs one request of owner on r and records its outcome.
func (w *world) do(owner string, r coordinator.Resource, fn func(ctx context.Context, c *coordinator.Coordinator) (coordinator.Lease, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := w.worker(owner)
	w.lastOwner, w.lastRes = owner, r
	w.lastPrevMax = w.maxToken[r]
	w.cmdsBefore, _ = w.redis.commands() // an error shows as a difference
	w.lastLease, w.lastErr = fn(ctx, c)
	w.cmdsAfter, _ = w.redis.commands()
	if w.lastErr == nil && w.lastLease.Token > w.maxToken[r] {
		w.maxToken[r] = w.lastLease.Token
		w.tokens[holdKey(owner, r)] = w.lastLease.Token
	}
}

func (w *world) acquire(owner string, r coordinator.Resource, opts ...coordinator.AcquireOption) {
	w.do(owner, r, func(ctx context.Context, c *coordinator.Coordinator) (coordinator.Lease, error) {
		return c.Acquire(ctx, r, owner, opts...)
	})
}

// ---- configuration and time -------------------------------------------

func (w *world) typeTTL(t, d string) error {
	ttl, err := parseDur(d)
	if err != nil {
		return err
	}
	if len(w.workers) > 0 || w.operator != nil {
		return errors.New("configure the coordinators before any worker starts")
	}
	w.opts = append(w.opts, coordinator.WithTTL(t, ttl))
	return nil
}

func (w *world) defaultTTL(d string) error {
	ttl, err := parseDur(d)
	if err != nil {
		return err
	}
	if len(w.workers) > 0 || w.operator != nil {
		return errors.New("configure the coordinators before any worker starts")
	}
	w.opts = append(w.opts, coordinator.WithDefaultTTL(ttl))
	return nil
}

// pass moves Redis's clock: every key's TTL (FastForward), then TIME
// (SetTime), so a lease whose expires_at has passed is also gone from
// Redis. In that order a keep-alive renewing in between leaves a lease
// whose expires_at is short of a full TTL from the new now, which the
// next renewal corrects (see passWhileKeptAlive).
func (w *world) pass(d string) error {
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	if dd <= 0 {
		return fmt.Errorf("time only moves forward, got %s", dd)
	}
	w.now = w.now.Add(dd)
	if err := w.redis.pass(dd, w.now); err != nil {
		return err
	}
	if w.audit != nil && !w.redis.movableClock() {
		// the mirror's rows hold Redis times too
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := w.audit.pool.Exec(ctx, `UPDATE locks SET acquired_at = acquired_at - $1::interval,
			renewed_at = renewed_at - $1::interval, expires_at = expires_at - $1::interval`, dd.String()); err != nil {
			return fmt.Errorf("shift the mirror's rows: %w", err)
		}
	}
	return nil
}

// ---- requests ------------------------------------------------------------

func (w *world) givenHolds(owner, t, id string) error { return w.givenHoldsTimes(owner, t, id, 1) }

func (w *world) givenHoldsTimes(owner, t, id string, n int) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		w.acquire(name, r)
		if w.lastErr != nil {
			return fmt.Errorf("worker %q could not take %s: %w", name, r, w.lastErr)
		}
		if w.lastLease.Count != i {
			return fmt.Errorf("worker %q took %s: hold count %d, want %d", name, r, w.lastLease.Count, i)
		}
	}
	return nil
}

func (w *world) acquires(owner, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	w.acquire(name, r)
	return nil
}

func (w *world) acquiresFor(owner, t, id, d string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	ttl, err := parseDur(d)
	if err != nil {
		return err
	}
	w.acquire(name, r, coordinator.TTL(ttl))
	return nil
}

func (w *world) ownerOfLength(n int, t, id string) error {
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	w.acquire(strings.Repeat("x", n), r)
	return nil
}

func (w *world) idOfLength(owner, t string, n int) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	w.acquire(name, coordinator.Resource{Type: t, ID: strings.Repeat("7", n)})
	return nil
}

func (w *world) renews(owner, t, id string) error { return w.renewsWith(owner, t, id, nil) }

func (w *world) renewsFor(owner, t, id, d string) error {
	ttl, err := parseDur(d)
	if err != nil {
		return err
	}
	return w.renewsWith(owner, t, id, []coordinator.AcquireOption{coordinator.TTL(ttl)})
}

func (w *world) renewsWith(owner, t, id string, opts []coordinator.AcquireOption) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	w.do(name, r, func(ctx context.Context, c *coordinator.Coordinator) (coordinator.Lease, error) {
		return c.Renew(ctx, r, name, opts...)
	})
	return nil
}

func (w *world) releases(owner, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	w.do(name, r, func(ctx context.Context, c *coordinator.Coordinator) (coordinator.Lease, error) {
		return c.Release(ctx, r, name)
	})
	return nil
}

func (w *world) releaseAll(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.lastReleased, w.lastErr = w.observer().ReleaseAll(ctx, name)
	return nil
}

func (w *world) shutsDown(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	c, ok := w.workers[name]
	if !ok {
		return fmt.Errorf("worker %q never started", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.lastErr = c.Close(ctx)
	return nil
}

// ---- outcomes --------------------------------------------------------------

func (w *world) inspect(t, id string) (coordinator.Resource, coordinator.Lease, error) {
	r, err := resource(t, id)
	if err != nil {
		return r, coordinator.Lease{}, err
	}
	l, err := w.inspectRes(r)
	return r, l, err
}

// inspectRes asks Redis, through the operator's coordinator, for the lease
// on r.
func (w *world) inspectRes(r coordinator.Resource) (coordinator.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.observer().Inspect(ctx, r)
}

func (w *world) granted(owner, t, id string, count int) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	if w.lastErr != nil {
		return fmt.Errorf("worker %q was refused: %w", w.lastOwner, w.lastErr)
	}
	l := w.lastLease
	if l.Owner != name || l.Resource != r || l.Count != count {
		return fmt.Errorf("got a lease on %s for %q with hold count %d, want %s for %q with hold count %d",
			l.Resource, l.Owner, l.Count, r, name, count)
	}
	return nil
}

func (w *world) requestGranted() error {
	if w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", w.lastErr)
	}
	if w.lastLease.Count < 1 || w.lastLease.Owner != w.lastOwner {
		return fmt.Errorf("the request returned %+v", w.lastLease)
	}
	return nil
}

func (w *world) newToken() error {
	if w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", w.lastErr)
	}
	if w.lastLease.Token == 0 || w.lastLease.Token <= w.lastPrevMax {
		return fmt.Errorf("token %d is not above %d, the highest issued before for %s", w.lastLease.Token, w.lastPrevMax, w.lastRes)
	}
	return nil
}

func (w *world) keepsToken() error {
	if w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", w.lastErr)
	}
	want := w.tokens[holdKey(w.lastOwner, w.lastRes)]
	if want == 0 {
		return fmt.Errorf("worker %q was never given %s", w.lastOwner, w.lastRes)
	}
	if w.lastLease.Token != want {
		return fmt.Errorf("token %d, want the token %d given at the acquisition", w.lastLease.Token, want)
	}
	return nil
}

func (w *world) tokenAbove(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	if w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", w.lastErr)
	}
	prev := w.tokens[holdKey(name, w.lastRes)]
	if prev == 0 {
		return fmt.Errorf("worker %q was never given %s", name, w.lastRes)
	}
	if w.lastLease.Token <= prev {
		return fmt.Errorf("token %d is not above %d, the token of worker %q", w.lastLease.Token, prev, name)
	}
	return nil
}

func (w *world) expiresIn(d string) error {
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	if w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", w.lastErr)
	}
	if now := w.clock(); !w.fromNow(w.lastLease.ExpiresAt, dd) {
		return fmt.Errorf("the lease expires at %s (%s from now), want %s", w.lastLease.ExpiresAt.UTC(), w.lastLease.ExpiresAt.Sub(now), now.Add(dd))
	}
	// Redis agrees.
	l, err := w.inspectRes(w.lastRes)
	if w.lapsed(err, w.lastLease.ExpiresAt) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", w.lastRes, err)
	}
	if !l.ExpiresAt.Equal(w.lastLease.ExpiresAt) {
		return fmt.Errorf("in Redis %s expires at %s, the call said %s", w.lastRes, l.ExpiresAt.UTC(), w.lastLease.ExpiresAt.UTC())
	}
	return nil
}

func (w *world) resourceExpiresIn(t, id, d string) error {
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	r, l, err := w.inspect(t, id)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", r, err)
	}
	if now := w.clock(); !w.fromNow(l.ExpiresAt, dd) {
		return fmt.Errorf("%s expires at %s (%s from now), want %s", r, l.ExpiresAt.UTC(), l.ExpiresAt.Sub(now), now.Add(dd))
	}
	return nil
}

func (w *world) heldBy(t, id, owner string, count int) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, l, err := w.inspect(t, id)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", r, err)
	}
	if l.Owner != name || l.Count != count || l.Resource != r {
		return fmt.Errorf("%s is held by %q with hold count %d, want %q with %d", r, l.Owner, l.Count, name, count)
	}
	if tok := w.tokens[holdKey(name, r)]; l.Token != tok {
		return fmt.Errorf("%s carries token %d, want %d, the token given to %q", r, l.Token, tok, name)
	}
	return nil
}

func (w *world) free(t, id string) error {
	r, l, err := w.inspect(t, id)
	if !errors.Is(err, coordinator.ErrNotHeld) {
		return fmt.Errorf("%s: want free (ErrNotHeld), got lease %+v, error %w", r, l, err)
	}
	return nil
}

func (w *world) refusedConflict(owner, holder, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	hold, err := unquote(holder)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	if w.lastOwner != name || w.lastRes != r {
		return fmt.Errorf("the last request was by %q on %s", w.lastOwner, w.lastRes)
	}
	if !errors.Is(w.lastErr, coordinator.ErrConflict) {
		return fmt.Errorf("want a conflict, got lease %+v, error %w", w.lastLease, w.lastErr)
	}
	ce, ok := errors.AsType[*coordinator.ConflictError](w.lastErr)
	if !ok {
		return fmt.Errorf("conflict %w is not a *ConflictError", w.lastErr)
	}
	tok := w.tokens[holdKey(hold, r)]
	if ce.Holder != hold || ce.Resource != r || ce.Token != tok {
		return fmt.Errorf("conflict names %q holding %s with token %d, want %q with token %d", ce.Holder, ce.Resource, ce.Token, hold, tok)
	}
	msg := w.lastErr.Error()
	for _, s := range []string{strconv.Quote(hold), strconv.FormatUint(tok, 10), r.String()} {
		if !strings.Contains(msg, s) {
			return fmt.Errorf("conflict message %q does not mention %s", msg, s)
		}
	}
	return nil
}

func (w *world) refusalShows(count int, d string) error {
	dd, err := parseDur(d)
	if err != nil {
		return err
	}
	ce, ok := errors.AsType[*coordinator.ConflictError](w.lastErr)
	if !ok {
		return fmt.Errorf("want a *ConflictError, got %w", w.lastErr)
	}
	if ce.Count != count {
		return fmt.Errorf("the refusal shows hold count %d, want %d", ce.Count, count)
	}
	if now := w.clock(); !w.fromNow(ce.ExpiresAt, dd) {
		return fmt.Errorf("the refusal shows expiry %s (%s from now), want %s", ce.ExpiresAt.UTC(), ce.ExpiresAt.Sub(now), now.Add(dd))
	}
	return nil
}

func (w *world) leaseError(op string, sentinel error) (*coordinator.LeaseError, error) {
	if !errors.Is(w.lastErr, sentinel) {
		return nil, fmt.Errorf("want %w, got lease %+v, error %w", sentinel, w.lastLease, w.lastErr)
	}
	le, ok := errors.AsType[*coordinator.LeaseError](w.lastErr)
	if !ok {
		return nil, fmt.Errorf("%w is not a *LeaseError", w.lastErr)
	}
	if le.Op != op || le.Resource != w.lastRes || le.Owner != w.lastOwner {
		return nil, fmt.Errorf("the error is about %s %s by %q, want %s %s by %q", le.Op, le.Resource, le.Owner, op, w.lastRes, w.lastOwner)
	}
	return le, nil
}

func (w *world) renewalExpired() error {
	_, err := w.leaseError("renew", coordinator.ErrExpired)
	return err
}

func (w *world) refusedNotHeld(what, owner string) error {
	op := map[string]string{"renewal": "renew", "release": "release"}[what]
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	if w.lastOwner != name {
		return fmt.Errorf("the last request was by %q", w.lastOwner)
	}
	if _, err := w.leaseError(op, coordinator.ErrNotHeld); err != nil {
		return err
	}
	if errors.Is(w.lastErr, coordinator.ErrExpired) {
		return fmt.Errorf("%w also matches ErrExpired", w.lastErr)
	}
	return nil
}

func (w *world) releaseLeaves(n int) error {
	if w.lastErr != nil {
		return fmt.Errorf("the release was refused: %w", w.lastErr)
	}
	if w.lastLease.Count != n {
		return fmt.Errorf("the release left hold count %d, want %d", w.lastLease.Count, n)
	}
	return nil
}

func (w *world) releasedCount(n int) error {
	if w.lastErr != nil {
		return fmt.Errorf("release-all failed: %w", w.lastErr)
	}
	if w.lastReleased != n {
		return fmt.Errorf("%d leases released, want %d", w.lastReleased, n)
	}
	return nil
}

func (w *world) cannotTakeLeases(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	w.acquire(name, coordinator.Plan("after-shutdown"))
	if !errors.Is(w.lastErr, coordinator.ErrClosed) {
		return fmt.Errorf("want ErrClosed, got lease %+v, error %w", w.lastLease, w.lastErr)
	}
	return nil
}

func (w *world) shutdownSucceeds() error {
	if w.lastErr != nil {
		return fmt.Errorf("shutdown failed: %w", w.lastErr)
	}
	return nil
}

func (w *world) refusedInvalid(field string) error {
	if !errors.Is(w.lastErr, coordinator.ErrInvalid) {
		return fmt.Errorf("want ErrInvalid, got lease %+v, error %w", w.lastLease, w.lastErr)
	}
	ve, ok := errors.AsType[*coordinator.ValidationError](w.lastErr)
	if !ok {
		return fmt.Errorf("%w is not a *ValidationError", w.lastErr)
	}
	if ve.Field != field {
		return fmt.Errorf("the error names the %s, want the %s: %w", ve.Field, field, w.lastErr)
	}
	if !strings.Contains(w.lastErr.Error(), field) || ve.Rule == "" {
		return fmt.Errorf("the message %q does not name the %s and its rule", w.lastErr.Error(), field)
	}
	return nil
}

func (w *world) redisUntouched() error {
	if n := w.cmdsAfter - w.cmdsBefore; n != 0 {
		return fmt.Errorf("the request sent %d commands to Redis", n)
	}
	return nil
}

// initScenario registers the steps on a world of the scenario's own, reset
// before and shut down after it.
func initScenario(sc *godog.ScenarioContext) { initScenarioOn(sc, newMiniBackend) }

// initScenarioOn is initScenario on the Redis newBackend gives each
// scenario, its store made with opts.
func initScenarioOn(sc *godog.ScenarioContext, newBackend func(time.Time) (redisBackend, error), opts ...redisstore.Option) {
	w := &world{newBackend: newBackend, storeOpts: opts}
	sc.Before(func(ctx context.Context, _ *godog.Scenario) (context.Context, error) {
		return ctx, w.reset()
	})
	sc.After(func(ctx context.Context, _ *godog.Scenario, _ error) (context.Context, error) {
		return ctx, errors.Join(w.shutdown(), w.dropAudit())
	})
	initAuditSteps(sc, w)
	initElectionSteps(sc, w)

	sc.Given(step(`coordinators give {type} leases a TTL of {dur}`), w.typeTTL)
	sc.Given(step(`coordinators give leases of other types a TTL of {dur}`), w.defaultTTL)
	sc.Step(step(`{dur} pass(?:es)?`), w.pass)

	sc.Given(step(`worker {q} holds {type} {q}`), w.givenHolds)
	sc.Given(step(`worker {q} holds {type} {q} (\d+) times`), w.givenHoldsTimes)
	sc.When(step(`worker {q} (?:acquires|asks for) {type} {q}(?: again)?`), w.acquires)
	sc.When(step(`worker {q} (?:acquires|asks for) {type} {q}(?: again)? for {dur}`), w.acquiresFor)
	sc.When(step(`a worker whose name is (\d+) bytes long asks for {type} {q}`), w.ownerOfLength)
	sc.When(step(`worker {q} asks for {type} with an id of (\d+) bytes`), w.idOfLength)
	sc.When(step(`worker {q} renews {type} {q}`), w.renews)
	sc.When(step(`worker {q} renews {type} {q} for {dur}`), w.renewsFor)
	sc.When(step(`worker {q} releases {type} {q}`), w.releases)
	sc.When(step(`an operator releases every lease of worker {q}`), w.releaseAll)
	sc.When(step(`worker {q} shuts down(?: again)?`), w.shutsDown)

	sc.Then(step(`worker {q} is granted {type} {q} with a hold count of (\d+)`), w.granted)
	sc.Then(step(`the request is granted`), w.requestGranted)
	sc.Then(step(`the lease carries a new fencing token`), w.newToken)
	sc.Then(step(`the lease keeps its fencing token`), w.keepsToken)
	sc.Then(step(`its token is greater than the token worker {q} was given`), w.tokenAbove)
	sc.Then(step(`the lease expires {dur} from now`), w.expiresIn)
	sc.Then(step(`{type} {q} expires {dur} from now`), w.resourceExpiresIn)
	sc.Then(step(`{type} {q} is held by worker {q} with a hold count of (\d+)`), w.heldBy)
	sc.Then(step(`{type} {q} is free`), w.free)
	sc.Then(step(`worker {q} is refused because worker {q} holds {type} {q}`), w.refusedConflict)
	sc.Then(step(`the refusal shows the holder's token, a hold count of (\d+) and an expiry {dur} from now`), w.refusalShows)
	sc.Then(step(`the renewal is refused because the lease has expired`), w.renewalExpired)
	sc.Then(step(`the (renewal|release) is refused because worker {q} does not hold it`), w.refusedNotHeld)
	sc.Then(step(`the release leaves a hold count of (\d+)`), w.releaseLeaves)
	sc.Then(step(`(\d+) leases? (?:was|were) released`), w.releasedCount)
	sc.Then(step(`worker {q} can no longer take leases`), w.cannotTakeLeases)
	sc.Then(step(`the shutdown succeeds`), w.shutdownSucceeds)
	sc.Then(step(`the request is refused as invalid because of the (.+)`), w.refusedInvalid)
	sc.Then(step(`Redis received no command`), w.redisUntouched)

	w.registerLifecycle(sc)
	registerModes(sc, w)
}
