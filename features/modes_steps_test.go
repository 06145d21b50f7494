package features_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cucumber/godog"

	"github.com/lockcoord/lockcoord/coordinator"
)

// modeSteps are the steps of modes.feature: shared and counted leases,
// upgrades, AcquireAll and retried store requests.
type modeSteps struct {
	w *world

	lastAll []coordinator.Lease // the leases of the last AcquireAll
	claims  []coordinator.Claim // its claims

	answers [][]coordinator.Lease // the store's answers to the requests sent by id
	errs    []error               // the errors of the requests run at once
	took    time.Duration         // how long they took
	rounds  int                   // rounds of holding all, per worker
}

// claimRE is one claim of a list: a resource, and " shared" for a shared
// one; claims are separated by ", ".
var claimRE = regexp.MustCompile(`^` + typ + ` ` + q + `( shared)?(?:, |$)`)

// parseClaims reads `project "apollo" shared, plan "42"`.
func parseClaims(s string) ([]coordinator.Claim, error) {
	var cs []coordinator.Claim
	for rest := s; rest != ""; {
		m := claimRE.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("not a list of claims (type \"id\"[ shared], ...): %q", s)
		}
		rest = rest[len(m[0]):]
		r, err := resource(m[1], m[2])
		if err != nil {
			return nil, err
		}
		cl := coordinator.Claim{Resource: r}
		if m[3] != "" {
			cl.Mode = coordinator.ModeShared
		}
		cs = append(cs, cl)
	}
	return cs, nil
}

// parseMode reads "shared" or "exclusive".
func parseMode(s string) coordinator.Mode {
	if s == "shared" {
		return coordinator.ModeShared
	}
	return coordinator.ModeExclusive
}

// acquireMode is acquire with the options of a step: shared, with a cap
// when permits > 0, for ttl when not 0.
func (m *modeSteps) acquireMode(owner, t, id string, permits int, ttl time.Duration) (string, error) {
	name, err := unquote(owner)
	if err != nil {
		return "", err
	}
	r, err := resource(t, id)
	if err != nil {
		return "", err
	}
	opts := []coordinator.AcquireOption{coordinator.Shared()}
	if permits > 0 {
		opts = append(opts, coordinator.Permits(permits))
	}
	if ttl > 0 {
		opts = append(opts, coordinator.TTL(ttl))
	}
	m.w.acquire(name, r, opts...)
	return name, nil
}

// given is a Given step's check: the last request was granted.
func (m *modeSteps) given(name string) error {
	if m.w.lastErr != nil {
		return fmt.Errorf("worker %q could not take %s: %w", name, m.w.lastRes, m.w.lastErr)
	}
	return nil
}

func (m *modeSteps) holdsShared(owner, t, id string) error {
	name, err := m.acquireMode(owner, t, id, 0, 0)
	if err != nil {
		return err
	}
	return m.given(name)
}

func (m *modeSteps) holdsSharedFor(owner, t, id, d string) error {
	ttl, err := parseDur(d)
	if err != nil {
		return err
	}
	name, err := m.acquireMode(owner, t, id, 0, ttl)
	if err != nil {
		return err
	}
	return m.given(name)
}

func (m *modeSteps) holdsCounted(owner, t, id string, n int) error {
	name, err := m.acquireMode(owner, t, id, n, 0)
	if err != nil {
		return err
	}
	return m.given(name)
}

// holdsSharedKeptAlive takes r shared and keeps the hold alive with a
// KeepAlive of its own.
func (m *modeSteps) holdsSharedKeptAlive(owner, t, id string) error {
	if err := m.holdsShared(owner, t, id); err != nil {
		return err
	}
	w := m.w
	l := w.lastLease
	ka := w.worker(w.lastOwner).KeepAlive(context.Background(), l)
	w.keepers[holdKey(w.lastOwner, w.lastRes)] = &keeper{ka: ka, ttl: l.ExpiresAt.Sub(l.AcquiredAt)}
	return nil
}

func (m *modeSteps) acquiresShared(owner, t, id string) error {
	_, err := m.acquireMode(owner, t, id, 0, 0)
	return err
}

func (m *modeSteps) acquiresCounted(owner, t, id string, n int) error {
	_, err := m.acquireMode(owner, t, id, n, 0)
	return err
}

func (m *modeSteps) grantedMode(owner, t, id, mode string, count int) error {
	if err := m.w.granted(owner, t, id, count); err != nil {
		return err
	}
	if got := m.w.lastLease.Mode; got != parseMode(mode) {
		return fmt.Errorf("the lease is %s, want %s", got, mode)
	}
	return nil
}

// holders lists the holders of r as the operator sees them: none when r
// is free.
func (m *modeSteps) holders(r coordinator.Resource) ([]coordinator.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := m.w.observer().Holders(ctx, r)
	if errors.Is(err, coordinator.ErrNotHeld) {
		return nil, nil
	}
	return ls, err
}

func (m *modeSteps) hasHolders(t, id string, n int) error {
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	ls, err := m.holders(r)
	if err != nil {
		return fmt.Errorf("holders of %s: %w", r, err)
	}
	if len(ls) != n {
		return fmt.Errorf("%s has %d holders (%+v), want %d", r, len(ls), ls, n)
	}
	return nil
}

// holderOf finds owner's hold of r, checking its mode and that it
// carries the token owner was given.
func (m *modeSteps) holderOf(t, id, owner, mode string) (coordinator.Lease, error) {
	name, err := unquote(owner)
	if err != nil {
		return coordinator.Lease{}, err
	}
	r, err := resource(t, id)
	if err != nil {
		return coordinator.Lease{}, err
	}
	ls, err := m.holders(r)
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("holders of %s: %w", r, err)
	}
	for _, l := range ls {
		if l.Owner != name {
			continue
		}
		if l.Mode != parseMode(mode) {
			return l, fmt.Errorf("%q holds %s %s, want %s", name, r, l.Mode, mode)
		}
		if tok := m.w.tokens[holdKey(name, r)]; l.Token != tok {
			return l, fmt.Errorf("%q holds %s with token %d, want %d, the token it was given", name, r, l.Token, tok)
		}
		return l, nil
	}
	return coordinator.Lease{}, fmt.Errorf("%q does not hold %s; its holders: %+v", name, r, ls)
}

func (m *modeSteps) stillHolds(owner, t, id, mode string) error {
	_, err := m.holderOf(t, id, owner, mode)
	return err
}

func (m *modeSteps) heldByMode(t, id, owner, mode string, count int) error {
	l, err := m.holderOf(t, id, owner, mode)
	if err == nil && l.Count != count {
		err = fmt.Errorf("%q holds %s with hold count %d, want %d", l.Owner, l.Resource, l.Count, count)
	}
	return err
}

// conflict is the last request's *ConflictError.
func (m *modeSteps) conflict() (*coordinator.ConflictError, error) {
	ce, ok := errors.AsType[*coordinator.ConflictError](m.w.lastErr)
	if !ok {
		return nil, fmt.Errorf("want a *ConflictError, got lease %+v, error %w", m.w.lastLease, m.w.lastErr)
	}
	return ce, nil
}

func (m *modeSteps) refusedShared(owner, t, id string, n int) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	ce, err := m.conflict()
	if err != nil {
		return err
	}
	switch {
	case m.w.lastOwner != name:
		return fmt.Errorf("the last request was by %q", m.w.lastOwner)
	case ce.Resource != r || ce.Mode != coordinator.ModeShared || ce.Holders != n:
		return fmt.Errorf("the refusal says %s is held %s by %d owners, want %s shared by %d", ce.Resource, ce.Mode, ce.Holders, r, n)
	case !strings.Contains(ce.Error(), "held shared by "+strconv.Itoa(n)+" owner"):
		return fmt.Errorf("the message %q does not say how many hold it", ce.Error())
	}
	return nil
}

func (m *modeSteps) refusalNames(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	ce, err := m.conflict()
	if err != nil {
		return err
	}
	if tok := m.w.tokens[holdKey(name, ce.Resource)]; ce.Holder != name || ce.Token != tok {
		return fmt.Errorf("the refusal names %q with token %d, want %q with token %d", ce.Holder, ce.Token, name, tok)
	}
	return nil
}

func (m *modeSteps) refusalCap(n int) error {
	ce, err := m.conflict()
	if err != nil {
		return err
	}
	if ce.Permits != n || !strings.Contains(ce.Error(), fmt.Sprintf("(cap %d)", n)) {
		return fmt.Errorf("the refusal says cap %d (%q), want %d", ce.Permits, ce.Error(), n)
	}
	return nil
}

func (m *modeSteps) leaseCap(n int) error {
	if m.w.lastErr != nil {
		return fmt.Errorf("the request was refused: %w", m.w.lastErr)
	}
	if m.w.lastLease.Permits != n {
		return fmt.Errorf("the lease says cap %d, want %d", m.w.lastLease.Permits, n)
	}
	return nil
}

func (m *modeSteps) namesRecordedCap(n int) error {
	want := fmt.Sprintf("capped at %d", n)
	switch {
	case m.w.lastErr == nil:
		return fmt.Errorf("the request was granted: %+v", m.w.lastLease)
	case !strings.Contains(m.w.lastErr.Error(), want):
		return fmt.Errorf("the error %w does not say %q", m.w.lastErr, want)
	}
	return nil
}

// upgradeAtOnce has both owners ask for r exclusive at once, waiting up
// to d.
func (m *modeSteps) upgradeAtOnce(o1, o2, t, id, d string) error {
	wait, err := parseDur(d)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	names := make([]string, 2)
	for i, o := range []string{o1, o2} {
		if names[i], err = unquote(o); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
	defer cancel()
	m.errs = make([]error, 2)
	start := time.Now()
	var wg sync.WaitGroup
	for i, name := range names {
		c := m.w.worker(name)
		wg.Go(func() {
			_, m.errs[i] = c.Acquire(ctx, r, name, coordinator.Wait(wait))
		})
	}
	wg.Wait()
	m.took = time.Since(start)
	return nil
}

func (m *modeSteps) bothUpgradeRefused() error {
	for i, err := range m.errs {
		ce, ok := errors.AsType[*coordinator.ConflictError](err)
		if !ok || !ce.Upgrade {
			return fmt.Errorf("request %d: want an upgrade conflict, got %w", i+1, err)
		}
	}
	if m.took > 5*time.Second {
		return fmt.Errorf("the upgrades were refused after %s, not at once", m.took)
	}
	return nil
}

// acquireAll runs an AcquireAll of owner for claims s, recorded as the
// last request (its resource: the busy one on a conflict, else the
// first).
func (m *modeSteps) acquireAll(owner, s string) (string, error) {
	name, err := unquote(owner)
	if err != nil {
		return "", err
	}
	cs, err := parseClaims(s)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.claims = cs
	w := m.w
	w.lastOwner, w.lastRes, w.lastLease = name, cs[0].Resource, coordinator.Lease{}
	m.lastAll, w.lastErr = w.worker(name).AcquireAll(ctx, name, cs)
	if ce, ok := errors.AsType[*coordinator.ConflictError](w.lastErr); ok {
		w.lastRes = ce.Resource
	}
	for _, l := range m.lastAll {
		if l.Token > w.maxToken[l.Resource] {
			w.maxToken[l.Resource] = l.Token
			w.tokens[holdKey(name, l.Resource)] = l.Token
		}
	}
	return name, nil
}

func (m *modeSteps) holdsAll(owner, s string) error {
	name, err := m.acquireAll(owner, s)
	if err != nil {
		return err
	}
	return m.given(name)
}

func (m *modeSteps) acquiresAll(owner, s string) error {
	_, err := m.acquireAll(owner, s)
	return err
}

func (m *modeSteps) grantedAll(owner string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	if m.w.lastErr != nil || m.w.lastOwner != name {
		return fmt.Errorf("worker %q's AcquireAll: %w", m.w.lastOwner, m.w.lastErr)
	}
	if len(m.lastAll) != len(m.claims) {
		return fmt.Errorf("%d leases for %d claims", len(m.lastAll), len(m.claims))
	}
	for i, l := range m.lastAll {
		if cl := m.claims[i]; l.Resource != cl.Resource || l.Mode != cl.Mode || l.Owner != name || l.Count < 1 {
			return fmt.Errorf("lease %d is %+v, for claim %+v", i, l, cl)
		}
	}
	return nil
}

// holdAllRounds has two owners each hold their claims n times at once,
// waiting up to d each time; every round's error is kept.
func (m *modeSteps) holdAllRounds(o1, o2, s1, s2 string, n int, d string) error {
	wait, err := parseDur(d)
	if err != nil {
		return err
	}
	var names [2]string
	var sets [2][]coordinator.Claim
	for i := range 2 {
		if names[i], err = unquote([]string{o1, o2}[i]); err != nil {
			return err
		}
		if sets[i], err = parseClaims([]string{s1, s2}[i]); err != nil {
			return err
		}
	}
	m.rounds, m.errs = n, make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range 2 {
		c, name, cs := m.w.worker(names[i]), names[i], sets[i]
		wg.Go(func() {
			for k := range n {
				ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
				m.errs[i*n+k] = c.HoldAll(ctx, name, cs, func(_ context.Context, ls []coordinator.Lease) error {
					if len(ls) != len(cs) {
						return fmt.Errorf("%d leases for %d claims", len(ls), len(cs))
					}
					return nil
				}, coordinator.Wait(wait))
				cancel()
			}
		})
	}
	wg.Wait()
	return nil
}

func (m *modeSteps) everyRoundGranted() error {
	if m.rounds == 0 {
		return errors.New("no rounds ran")
	}
	for i, err := range m.errs {
		if err != nil {
			return fmt.Errorf("worker %d, round %d: %w", i/m.rounds+1, i%m.rounds+1, err)
		}
	}
	return nil
}

// storeRequest sends reqs to the store itself (the coordinator makes a
// new request id per call) and keeps the answer.
func (m *modeSteps) storeRequest(id, owner, s string) error {
	rid, err := unquote(id)
	if err != nil {
		return err
	}
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	cs, err := parseClaims(s)
	if err != nil {
		return err
	}
	reqs := make([]coordinator.Request, len(cs))
	for i, cl := range cs {
		reqs[i] = coordinator.Request{Resource: cl.Resource, Owner: name, RequestID: rid, Mode: cl.Mode,
			TTL: coordinator.DefaultTTLFor(cl.Resource.Type)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ls []coordinator.Lease
	if len(reqs) == 1 {
		var l coordinator.Lease
		l, err = m.w.store.Acquire(ctx, reqs[0])
		ls = []coordinator.Lease{l}
	} else {
		ls, err = m.w.store.AcquireAll(ctx, reqs)
	}
	if err != nil {
		return fmt.Errorf("store request %q: %w", rid, err)
	}
	for _, l := range ls {
		if _, seen := m.w.tokens[holdKey(name, l.Resource)]; !seen {
			m.w.tokens[holdKey(name, l.Resource)] = l.Token
		}
	}
	m.answers = append(m.answers, ls)
	return nil
}

func (m *modeSteps) storeRequestOne(id, owner, t, rid string) error {
	return m.storeRequest(id, owner, t+` "`+rid+`" shared`)
}

func (m *modeSteps) sameTokens() error {
	if len(m.answers) != 2 {
		return fmt.Errorf("%d answers, want 2", len(m.answers))
	}
	a, b := m.answers[0], m.answers[1]
	if len(a) != len(b) {
		return fmt.Errorf("answers of %d and %d leases", len(a), len(b))
	}
	for i := range a {
		if a[i].Token != b[i].Token || a[i].Count != b[i].Count {
			return fmt.Errorf("%s: first answer token %d count %d, the retry's token %d count %d",
				a[i].Resource, a[i].Token, a[i].Count, b[i].Token, b[i].Count)
		}
	}
	return nil
}

// queuedFor waits until owner's coordinator is queued for r in Redis
// (the store's fair queue, redisstore.Layout.QueueKey): a waiter queues
// itself when its first attempt is refused.
func (m *modeSteps) queuedFor(owner, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	if _, err := m.w.waiter(owner, t, id); err != nil {
		return err
	}
	key := m.w.store.Layout().QueueKey(r)
	return poll(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		q, err := m.w.client.Get(ctx, key).Result()
		switch {
		case err != nil:
			return fmt.Errorf("nobody queued for %s (worker %q waits): %w", r, name, err)
		case strings.TrimSpace(q) == "":
			return fmt.Errorf("nobody queued for %s (worker %q waits)", r, name)
		}
		return nil
	})
}

func (m *modeSteps) refusedQueued(owner string, n int, t, id string) error {
	name, err := unquote(owner)
	if err != nil {
		return err
	}
	r, err := resource(t, id)
	if err != nil {
		return err
	}
	ce, err := m.conflict()
	if err != nil {
		return err
	}
	if m.w.lastOwner != name || ce.Resource != r || ce.Queued != n {
		return fmt.Errorf("the refusal of %q on %s says %d queued ahead (%w), want %q on %s with %d", m.w.lastOwner, ce.Resource,
			ce.Queued, ce, name, r, n)
	}
	return nil
}

// registerModes registers the steps of modes.feature.
func registerModes(sc *godog.ScenarioContext, w *world) {
	m := &modeSteps{w: w}
	sc.Before(func(ctx context.Context, _ *godog.Scenario) (context.Context, error) {
		*m = modeSteps{w: w}
		return ctx, nil
	})
	sc.Given(step(`worker {q} holds {type} {q} shared`), m.holdsShared)
	sc.Given(step(`worker {q} holds {type} {q} shared for {dur}`), m.holdsSharedFor)
	sc.Given(step(`worker {q} holds {type} {q} shared and keeps it alive`), m.holdsSharedKeptAlive)
	sc.Given(step(`worker {q} holds {type} {q} shared with (\d+) permits`), m.holdsCounted)
	sc.Given(step(`worker {q} holds all of (.+)`), m.holdsAll)
	sc.When(step(`worker {q} (?:acquires|asks for) {type} {q} shared(?: again)?`), m.acquiresShared)
	sc.When(step(`worker {q} (?:acquires|asks for) {type} {q} shared with (\d+) permits`), m.acquiresCounted)
	sc.When(step(`worker {q} acquires all of (.+)`), m.acquiresAll)
	sc.When(step(`workers {q} and {q} both ask for {type} {q} exclusive at once, waiting up to {dur}`), m.upgradeAtOnce)
	sc.When(step(`workers {q} and {q} hold all of (.+) and all of (.+) at once, (\d+) times, waiting up to {dur}`), m.holdAllRounds)
	sc.When(step(`store request {q} of worker {q} takes {type} {q} shared`), m.storeRequestOne)
	sc.When(step(`store request {q} of worker {q} takes all of (.+)`), m.storeRequest)
	sc.Then(step(`worker {q} is granted {type} {q} (shared|exclusive) with a hold count of (\d+)`), m.grantedMode)
	sc.Then(step(`worker {q} is granted all of them`), m.grantedAll)
	sc.Then(step(`{type} {q} has (\d+) holders?`), m.hasHolders)
	sc.Then(step(`worker {q} still holds {type} {q} (shared|exclusive)`), m.stillHolds)
	sc.Then(step(`{type} {q} is held by worker {q} (shared|exclusive) with a hold count of (\d+)`), m.heldByMode)
	sc.Then(step(`worker {q} is refused because {type} {q} is held shared by (\d+) workers?`), m.refusedShared)
	sc.Then(step(`the refusal names worker {q}, the first to expire`), m.refusalNames)
	sc.Then(step(`the refusal says the cap is (\d+)`), m.refusalCap)
	sc.Then(step(`the lease says the cap is (\d+)`), m.leaseCap)
	sc.Then(step(`the error names the recorded cap of (\d+)`), m.namesRecordedCap)
	sc.Then(step(`both are refused at once with an upgrade conflict`), m.bothUpgradeRefused)
	sc.Then(step(`every round of both was granted all of its claims`), m.everyRoundGranted)
	sc.Then(step(`both answers carry the same token`), m.sameTokens)
	sc.Then(step(`worker {q} is queued for {type} {q}`), m.queuedFor)
	sc.Then(step(`worker {q} is refused because (\d+) waiters? (?:is|are) queued ahead for {type} {q}`), m.refusedQueued)
}
