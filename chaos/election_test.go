package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// TestElectionFaults is scenario 9: candidates, each a worker process of
// its own that the test can pause, campaign for one office in a loop
// (Lead). A leader writes to a fenced resource with its term a few times,
// proclaims a value after its first write, and resigns. Observers, each
// with a coordinator of its own, follow the office (Observe) for the
// whole run. Meanwhile the leader's process is paused for twice the TTL,
// and Redis is killed (kill -9 and restart), paused (CLIENT PAUSE),
// frozen (SIGSTOP) and cut off (the proxy).
//
// The checks: (1) the fenced resource never accepts a write of an older
// term after one of a newer term, and its refusals are counted (the
// paused leaders' writes: the test's control); (2) the terms strictly
// increase in the order they began (Redis time), and no two candidates
// share one; (3) every observer sees every term, in increasing order,
// but for terms that began during a gap it was told of. A leader must be
// told of its loss before its lease's expiry unless the test process
// itself stalled (as in TestRedisFaults).
//
// With appendonly Redis keeps the office across a kill, so no second
// leader may enter while the first, not told of a loss, still writes.
// Without persistence a kill loses the office, its events and the fence
// counter: a second leader can be elected while the first still believes
// it leads (the known limit fencing covers), and the observers get a gap.
// The terms still go up across such a kill, as the scripts take
// max(fence + 1, Redis TIME in µs) (TestTokensNeverGoBackward): the test
// assumes a clock that does not step back, and checks it in both modes.
func TestElectionFaults(t *testing.T) {
	parallel(t)
	eachPersistence(t, electionFaults)
}

// termBits is how many low bits of a token at the fenced resource number
// a leader's writes within its term: the resource orders writes by (term,
// write), so that a leader's successive writes are accepted and any write
// of an older term is refused. Terms are Redis TIME in µs (about 2^51),
// far below 2^(64-termBits).
const termBits = 8

// candidate is one candidate's worker process and what the test knows of
// its leadership.
type candidate struct {
	wk     *worker
	pauses atomic.Int64               // pauses of its process so far
	cur    atomic.Pointer[termRecord] // the term it leads now, nil between terms
	left   atomic.Int64               // writes its term has still to make
	writes map[uint64]uint64          // writes made in each term (the candidate's goroutine only)

	proclaimed, proclaimErrs int // the candidate's goroutine only
}

// termRecord is what a candidate saw of one Lead: a holdRecord of the
// office, with the term's beginning and the fate of its writes.
type termRecord struct {
	*holdRecord
	since   time.Time // Redis time the term began
	refused bool      // a write was refused: another leader had written, this one stepped down
}

// pause pauses the candidate's process for d.
func (c *candidate) pause(d time.Duration) {
	c.wk.proc.Pause(d)
	c.pauses.Add(1) // after the pause is set: whoever sees the count waits the pause out
}

// campaign runs Lead in a loop until ctx ends, handing every attempt to
// out; an attempt that did not lead backs off 250-500 ms, as a worker
// would while Redis is unreachable.
func (c *candidate) campaign(ctx context.Context, election string, ttl time.Duration, tr *fenced.Tracker, out func(*termRecord)) {
	rng := rand.New(rand.NewPCG(uint64(c.wk.id), uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		r := &termRecord{holdRecord: &holdRecord{id: holdSeq.Add(1), worker: c.wk, r: coordinator.Election(election), start: time.Now()}}
		// terms of up to two TTLs: long terms live on renewals, and
		// Redis's faults find a leader to depose
		writes := 2 + rng.IntN(6)
		every := time.Duration(150+rng.IntN(200)) * time.Millisecond
		err := c.wk.c.Lead(ctx, election, c.wk.owner, c.wk.owner, func(tctx context.Context, term *coordinator.Term) error {
			return c.serve(tctx, term, tr, r, writes, every)
		}, coordinator.TTL(ttl))
		r.mu.Lock()
		r.err, r.end = err, time.Now()
		r.mu.Unlock()
		out(r)
		if r.token == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(250+rng.IntN(250)) * time.Millisecond):
			}
		}
	}
}

// serve is a leader's work: it enters the fenced resource, writes to it
// with its term writes times, every apart, and proclaims a value after
// the first write. A live leader stops when told of a loss; a leader
// whose process was paused writes once more when the pause ends, without
// looking (the hazard fencing covers); a refused write ends the term.
func (c *candidate) serve(ctx context.Context, term *coordinator.Term, tr *fenced.Tracker, r *termRecord, writes int, every time.Duration) error {
	r.token, r.since, r.entered = term.Token, term.Since, time.Now()
	if term.Token >= 1<<(64-termBits) {
		return fmt.Errorf("term %d does not leave %d bits for the writes", term.Token, termBits)
	}
	c.left.Store(int64(writes))
	c.cur.Store(r)
	defer c.cur.Store(nil)
	defer noticeLoss(ctx, r.holdRecord)()
	defer tr.Exit(r.id)
	if _, err := tr.Enter(ctx, r.id, c.wk.owner, term.Token); err != nil {
		return err
	}
	seen := c.pauses.Load()
	for n := 0; n < writes || c.pauses.Load() != seen; n++ {
		if n > 0 {
			select {
			case <-time.After(every):
			case <-ctx.Done():
			}
		}
		pauses := c.pauses.Load()
		_ = c.wk.proc.wait(context.Background()) // a paused process does nothing until the pause ends
		stalled := pauses != seen
		seen = pauses
		r.checked = time.Now()
		told := ctx.Err() != nil
		if told && !stalled {
			return nil // a live leader stops when told
		}
		r.stalled = r.stalled || stalled
		if ok, err := c.write(ctx, tr, r, told, stalled); err != nil || !ok {
			return err
		}
		c.left.Store(int64(writes - n - 1))
		if n == 0 {
			c.proclaim(ctx, term)
		}
	}
	return nil
}

// write sends the leader's next write of its term to the fenced resource.
func (c *candidate) write(ctx context.Context, tr *fenced.Tracker, r *termRecord, told, stalled bool) (bool, error) {
	n := c.writes[r.token] + 1
	if n >= 1<<termBits {
		return false, fmt.Errorf("term %d: more than %d writes", r.token, 1<<termBits-1)
	}
	c.writes[r.token] = n
	ok, err := tr.Write(ctx, r.id, c.wk.owner, r.token<<termBits|n, int64(n), told, stalled)
	if err != nil {
		return false, err
	}
	r.wrote = true
	r.accepted = r.accepted || ok
	r.refused = !ok
	return ok, nil
}

// proclaim changes the leader's value; a failure (the term over, Redis
// unreachable) is counted, and the leader goes on until told.
func (c *candidate) proclaim(ctx context.Context, term *coordinator.Term) {
	if err := term.Proclaim(ctx, fmt.Sprintf("%s/%d", c.wk.owner, term.Token%1000)); err != nil {
		c.proclaimErrs++
		return
	}
	c.proclaimed++
}

// sighting is a Leader an observer received, and when.
type sighting struct {
	coordinator.Leader
	at time.Time
}

// observer follows the office with a coordinator of its own.
type observer struct {
	id   int
	c    *coordinator.Coordinator
	mu   sync.Mutex
	seen []sighting
	done chan struct{}
}

// observe starts an observer of election; it runs until ctx ends.
func (w *world) observe(ctx context.Context, id int, election string) (*observer, error) {
	o := &observer{id: id, c: coordinator.New(w.store(w.client())), done: make(chan struct{})}
	w.t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = o.c.Close(cctx)
	})
	ch, err := o.c.Observe(ctx, election)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(o.done)
		for l := range ch {
			o.mu.Lock()
			o.seen = append(o.seen, sighting{Leader: l, at: time.Now()})
			o.mu.Unlock()
		}
	}()
	return o, nil
}

// highest returns the highest token the observer saw.
func (o *observer) highest() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var m uint64
	for _, s := range o.seen {
		m = max(m, s.Token)
	}
	return m
}

// sightings returns what the observer saw (once it stopped).
func (o *observer) sightings() []sighting {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

func electionFaults(t *testing.T, args []string, persistent bool) {
	var (
		nCands = size(3, 5)
		nObs   = size(2, 3)
		ttl    = time.Second
		before = size(time.Second, 5*time.Second)
		after  = size(time.Second, 5*time.Second)
		rounds = size(1, 4)
		// every fault outlasts the TTL but the kill (whose restart loses
		// the office without persistence) and the cut
		round = []faultPlan{
			{"leader", 2 * ttl}, {"kill", size(250*time.Millisecond, 500*time.Millisecond)},
			{"pause", 1300 * time.Millisecond}, {"leader", 2 * ttl},
			{"cut", size(300*time.Millisecond, time.Second)}, {"freeze", 1300 * time.Millisecond},
		}
	)
	var faults []faultPlan
	for range rounds {
		faults = append(faults, round...)
	}
	gap := faultGap(faults, size(12*time.Second, 60*time.Second), ttl)
	const election = "chaos-office"

	w := newWorld(t, worldConfig{serverArgs: args, proxy: true, client: clientOptions(300 * time.Millisecond), noRetries: true})
	tr := fenced.NewTracker(fenced.NewMemory(), "office")
	octx, ostop := context.WithCancel(context.Background())
	defer ostop()
	observers := make([]*observer, nObs)
	for i := range observers {
		o, err := w.observe(octx, i, election)
		if err != nil {
			t.Fatalf("observe: %v", err)
		}
		observers[i] = o
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var terms []*termRecord
	keep := func(r *termRecord) {
		mu.Lock()
		terms = append(terms, r)
		mu.Unlock()
	}
	cands := make([]*candidate, nCands)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cands {
		c := &candidate{wk: w.worker(i), writes: map[uint64]uint64{}}
		cands[i] = c
		wg.Go(func() { c.campaign(ctx, election, ttl, tr, keep) })
	}

	time.Sleep(before)
	paused, idle := 0, 0
	var target *candidate
	injected := w.injectAll(t, faults, gap, persistent, faultHooks{
		before: func(faultPlan) {
			// every fault strikes while a leader has work left, if one comes
			if target = leading(cands, 2*ttl); target == nil {
				idle++
			}
		},
		own: func(f faultPlan) bool {
			if f.kind != "leader" {
				return false
			}
			if target != nil {
				target.pause(f.d)
				paused++
			}
			time.Sleep(f.d)
			return true
		},
	})
	time.Sleep(after)
	cancel()
	wg.Wait()

	// a last term, fault-free, that every observer must see: the
	// observers are live at the end, and have read all before it
	last := &termRecord{holdRecord: &holdRecord{id: holdSeq.Add(1), worker: cands[0].wk, r: coordinator.Election(election), start: time.Now()}}
	last.err = cands[0].wk.c.Lead(context.Background(), election, cands[0].wk.owner, "last", func(ctx context.Context, term *coordinator.Term) error {
		last.token, last.since, last.entered = term.Token, term.Since, time.Now()
		return nil
	}, coordinator.TTL(ttl), coordinator.Wait(10*time.Second))
	last.end = time.Now()
	if last.err != nil {
		t.Fatalf("the last term: %v", last.err)
	}
	terms = append(terms, last)
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	caught := testutil.Poll(pctx, 10*time.Millisecond, func() error {
		for _, o := range observers {
			if o.highest() < last.token {
				return testutil.ErrNotYet
			}
		}
		return nil
	})
	ostop()
	for _, o := range observers {
		<-o.done
	}
	end := time.Now()

	e := electionFigures{persistent: persistent, ttl: ttl, terms: terms, injected: injected, start: start, end: end}
	e.check(t, w, tr, observers)
	report(t, "election faults (%s): %d candidates, %d observers, TTL %v, %v run; faults: %s; leaders paused %d; faults that found no leader at work %d",
		map[bool]string{true: "appendonly", false: "no persistence"}[persistent], nCands, nObs, ttl,
		end.Sub(start).Round(time.Second), describeFaults(injected), paused, idle)
	e.report(t, cands)
	reportStalls(t, w.stalls)
	if caught != nil {
		t.Errorf("the observers did not see the last term %d within 10 s: %v", last.token, caught)
	}
	if paused == 0 {
		t.Errorf("control failed: no leader was paused")
	}
}

// leading returns a candidate that leads and has writes left, waiting up
// to d for one; nil if none came.
func leading(cands []*candidate, d time.Duration) *candidate {
	deadline := time.Now().Add(d)
	for {
		for _, c := range cands {
			if c.cur.Load() != nil && c.left.Load() > 0 {
				return c
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond) // poll the candidates' state
	}
}

// termInfo is one term as the test knows it: from its leader, or only
// from the observers (a term whose leader never learnt of it: an
// acquisition whose reply was lost, a proclaim after the term ended).
type termInfo struct {
	token     uint64
	since     time.Time
	candidate string
	known     bool // its leader ran it
}

// electionFigures are a run's terms and faults, and what the checks
// found.
type electionFigures struct {
	persistent bool
	ttl        time.Duration
	terms      []*termRecord
	injected   []fault
	start, end time.Time

	all               []termInfo // every term, by token
	handOvers, ghosts int
	fs                fenced.Stats
	hs                holdStats
	fencedN           int
	untold            []string
	obs               []observerFigures
}

// led returns the attempts that led (a term), by token.
func (e *electionFigures) led() []*termRecord {
	var out []*termRecord
	for _, r := range e.terms {
		if r.token != 0 {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].token < out[j].token })
	return out
}

// check runs the three checks and the keep-alive's, failing t.
func (e *electionFigures) check(t *testing.T, w *world, tr *fenced.Tracker, observers []*observer) {
	t.Helper()
	var sights [][]sighting
	for _, o := range observers {
		sights = append(sights, o.sightings())
	}
	// (2) the terms strictly increase in the order they began
	var faults []string
	e.all, faults = collectTerms(e.led(), sights)
	for i := 1; i < len(e.all); i++ {
		a, b := e.all[i-1], e.all[i]
		if b.since.Before(a.since) {
			faults = append(faults, fmt.Sprintf("term %d (%s) began at %v, before term %d (%s) at %v",
				b.token, b.candidate, b.since.Format(time.StampMilli), a.token, a.candidate, a.since.Format(time.StampMilli)))
		}
		if a.candidate != b.candidate {
			e.handOvers++
		}
	}
	for _, x := range e.all {
		if !x.known {
			e.ghosts++
		}
	}
	if len(faults) > 0 {
		t.Errorf("terms not strictly increasing in the order they began:\n%v", faults)
	}
	// (1) the fenced resource
	e.fs = tr.Stats()
	var holds []*holdRecord
	for _, r := range e.led() {
		holds = append(holds, r.holdRecord)
	}
	e.hs = summarize(holds, w.rec, w.stalls, e.ttl/10, func(h *holdRecord) time.Time {
		if f, ok := lastFault(e.injected, h.toldAt); ok {
			return f.start
		}
		return time.Time{}
	})
	e.fencedN, e.untold = overtaken(e.fs, holds, w.rec, w.stalls, e.ttl/10)
	if e.fs.StaleAccepted != 0 || e.fs.WronglyRejected != 0 {
		t.Errorf("fencing violated (tokens are term<<%d | write): %+v\n%v", termBits, e.fs, e.fs.Details)
	}
	if e.persistent && len(e.untold) != 0 {
		t.Errorf("two live leaders with a persistent Redis: %v", e.untold)
	}
	if e.hs.toldLate != 0 {
		t.Errorf("%d losses of office signalled after the lease's expiry: %v", e.hs.toldLate, e.hs.lateDetail)
	}
	if e.fs.Overlaps == 0 || e.fs.Rejected == 0 {
		t.Errorf("control failed: %d overlapping terms, %d refused writes: the paused leaders did not write after their term", e.fs.Overlaps, e.fs.Rejected)
	}
	// (3) the observers
	for i, s := range sights {
		of := checkObserver(s, e.all)
		e.obs = append(e.obs, of)
		if len(of.faults) > 0 {
			t.Errorf("observer %d:\n%v", i, of.faults)
		}
	}
}

// collectTerms gathers the terms of the leaders and those only the
// observers saw, by token, and reports two candidates given one term.
func collectTerms(led []*termRecord, sights [][]sighting) ([]termInfo, []string) {
	byToken := map[uint64]*termInfo{}
	var faults []string
	add := func(x termInfo) {
		have := byToken[x.token]
		switch {
		case have == nil:
			byToken[x.token] = &x
		case have.candidate != x.candidate:
			faults = append(faults, fmt.Sprintf("term %d given to %s and to %s", x.token, have.candidate, x.candidate))
		case x.known:
			have.known = true
		}
	}
	for _, r := range led {
		add(termInfo{token: r.token, since: r.since, candidate: r.worker.owner, known: true})
	}
	for _, ss := range sights {
		for _, s := range ss {
			if !s.Vacant() {
				add(termInfo{token: s.Token, since: s.Since, candidate: s.Candidate})
			}
		}
	}
	all := make([]termInfo, 0, len(byToken))
	for _, x := range byToken {
		all = append(all, *x)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].token < all[j].token })
	return all, faults
}

// observerFigures is what one observer saw.
type observerFigures struct {
	sightings, terms, values, gaps int
	missedInGaps                   int
	faults                         []string
}

// checkObserver checks that an observer saw the terms in increasing
// order, and every term of all but those that began during a gap it was
// told of: a term missing between two sightings needs a sighting flagged
// Gap between them, received after the term began.
func checkObserver(seen []sighting, all []termInfo) observerFigures {
	f := observerFigures{sightings: len(seen)}
	saw := map[uint64]bool{}
	var top uint64
	for i, s := range seen {
		if s.Gap {
			f.gaps++
		}
		if s.Token != 0 && s.Token < top {
			f.faults = append(f.faults, fmt.Sprintf("sighting %d: token %d after %d", i, s.Token, top))
		}
		top = max(top, s.Token)
		if s.Vacant() {
			continue
		}
		if !saw[s.Token] {
			f.terms++
		} else if i > 0 && seen[i-1].Token == s.Token && seen[i-1].Value != s.Value {
			f.values++
		}
		saw[s.Token] = true
	}
	if len(seen) == 0 {
		f.faults = append(f.faults, "saw nothing")
		return f
	}
	for _, x := range all {
		if saw[x.token] || x.token <= seen[0].Token {
			continue
		}
		// the sightings before and after the term
		from, to := -1, len(seen)
		for i, s := range seen {
			if s.Token != 0 && s.Token < x.token {
				from = i
			}
			if s.Token > x.token {
				to = i
				break
			}
		}
		excused := false
		for i := from + 1; i < len(seen) && i <= to; i++ {
			if seen[i].Gap && !seen[i].at.Before(x.since) {
				excused = true
			}
		}
		if excused {
			f.missedInGaps++
			continue
		}
		f.faults = append(f.faults, fmt.Sprintf("term %d (%s, began %v) missed without a gap between sightings %d and %d",
			x.token, x.candidate, x.since.Format(time.StampMilli), from, to))
	}
	return f
}

// report prints the run's figures.
func (e *electionFigures) report(t *testing.T, cands []*candidate) {
	t.Helper()
	led := e.led()
	campaigns := map[string]int{}
	for _, r := range e.terms {
		if r.token == 0 && r.err != nil && !errors.Is(r.err, context.Canceled) {
			campaigns[errorKind(r.err)]++
		}
	}
	proclaimed, proclaimErrs := 0, 0
	for _, c := range cands {
		proclaimed += c.proclaimed
		proclaimErrs += c.proclaimErrs
	}
	deposed, failover, handOver := e.failovers(led)
	var maxFailover time.Duration
	for _, d := range failover {
		maxFailover = max(maxFailover, d)
	}
	report(t, "  terms %d (Lead calls that led %d), hand-overs between candidates %d, terms no candidate knew %d; campaigns failed %v; proclaims %d ok, %d failed",
		len(e.all), len(led), e.handOvers, e.ghosts, campaigns, proclaimed, proclaimErrs)
	report(t, "  terms ended by a fault (lost, or resigned in vain) %v; failover (the fault's start to the next leader's first act) max %v, by fault %v; hand-over after a resignation p50 %v max %v",
		deposed, maxFailover.Round(time.Millisecond), roundAll(failover), percentile(handOver, 50).Round(time.Millisecond),
		percentile(handOver, 100).Round(time.Millisecond))
	report(t, "  losses of office %d (%d of %d paused leaders): told before the expiry %d, after it during a stall of the test process %d, after it otherwise %d; notice after the fault began p50 %v p99 %v",
		e.hs.lost, e.hs.lostStalled, e.hs.stalled, e.hs.toldEarly, e.hs.toldLateStalled, e.hs.toldLate,
		percentile(e.hs.notice, 50).Round(time.Millisecond), percentile(e.hs.notice, 99).Round(time.Millisecond))
	report(t, "  fenced resource: %d writes, %d accepted, %d refused (%d from leaders told of their loss or paused, %d from live leaders superseded); overlapping terms %d (live %d); stale writes accepted %d; live overlaps and superseded leaders during a stall of the test process or a late write %d, otherwise %d (the office lost with Redis's data when not persistent)",
		e.fs.Writes, e.fs.Accepted, e.fs.Rejected, e.fs.Rejected-e.fs.RejectedUntold, e.fs.RejectedUntold,
		e.fs.Overlaps, e.fs.LiveOverlaps, e.fs.StaleAccepted, e.fencedN, len(e.untold))
	for i, o := range e.obs {
		report(t, "  observer %d: %d sightings, %d terms, %d value changes; gaps %d, terms missed within gaps %d, missed otherwise %d",
			i, o.sightings, o.terms, o.values, o.gaps, o.missedInGaps, len(o.faults))
	}
}

// failovers returns the terms ended by a fault (lost, or resigned in
// vain while Redis was unreachable, and not re-entered by their leader;
// the fault is the last begun before the loss was told, or before the
// term ended), by the fault's kind; the
// longest time from such a fault's start to the next leader's first act,
// by kind; and the times from a resignation to the next leader's first
// act.
func (e *electionFigures) failovers(led []*termRecord) (deposed map[string]int, failover map[string]time.Duration, handOver []time.Duration) {
	deposed, failover = map[string]int{}, map[string]time.Duration{}
	next := func(i int) *termRecord {
		for _, r := range led[i+1:] {
			if r.token > led[i].token {
				return r
			}
		}
		return nil
	}
	// a candidate that campaigns again while its lease lives re-enters
	// it: the same term goes on, the office was never vacant
	goesOn := func(r *termRecord) bool {
		return slices.ContainsFunc(led, func(o *termRecord) bool { return o.token == r.token && o.entered.After(r.entered) })
	}
	for i, r := range led {
		n := next(i)
		if n == nil || goesOn(r) {
			continue
		}
		switch {
		case r.lost(), r.err != nil && !r.refused && !errors.Is(r.err, context.Canceled):
			// lost, or its resignation failed: Redis was unreachable
			at := r.toldAt
			if at.IsZero() {
				at = r.end
			}
			f, ok := lastFault(e.injected, at)
			if !ok {
				continue
			}
			deposed[f.kind]++
			if d := n.entered.Sub(f.start); d > 0 {
				failover[f.kind] = max(failover[f.kind], d)
			}
		case r.err == nil && !r.refused && !r.stalled:
			handOver = append(handOver, max(n.entered.Sub(r.end), 0))
		}
	}
	return deposed, failover, handOver
}

// roundAll rounds durations by key to the millisecond, for a report.
func roundAll(m map[string]time.Duration) map[string]time.Duration {
	out := make(map[string]time.Duration, len(m))
	for k, d := range m {
		out[k] = d.Round(time.Millisecond)
	}
	return out
}

// TestElectionCheckers shows the observer check and the term check
// catch what they exist for: a term missed without a gap, a term missed
// after a gap was read, tokens going back, one term given to two
// candidates.
func TestElectionCheckers(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	all := []termInfo{{token: 10, since: at(10), candidate: "a"}, {token: 20, since: at(20), candidate: "b"},
		{token: 30, since: at(30), candidate: "a"}, {token: 40, since: at(40), candidate: "c"}}
	lead := func(tok uint64, ms int, gap bool) sighting {
		c := map[uint64]string{10: "a", 20: "b", 30: "a", 40: "c"}[tok]
		return sighting{Leader: coordinator.Leader{Candidate: c, Token: tok, Gap: gap}, at: at(ms)}
	}
	vacant := func(tok uint64, ms int, gap bool) sighting {
		return sighting{Leader: coordinator.Leader{Token: tok, Gap: gap}, at: at(ms)}
	}
	for _, c := range []struct {
		name          string
		seen          []sighting
		faults, inGap int
	}{
		{"every term", []sighting{vacant(0, 0, false), lead(10, 11, false), lead(20, 21, false), vacant(20, 25, false), lead(30, 31, false), lead(40, 41, false)}, 0, 0},
		{"a term missed", []sighting{vacant(0, 0, false), lead(10, 11, false), lead(30, 31, false), lead(40, 41, false)}, 1, 0},
		{"missed in a gap", []sighting{vacant(0, 0, false), lead(10, 11, false), lead(30, 35, true), lead(40, 41, false)}, 0, 1},
		{"missed in a gap read as a vacancy", []sighting{vacant(0, 0, false), lead(10, 11, false), vacant(0, 32, true), lead(40, 41, false)}, 0, 2},
		{"missed after the gap was read", []sighting{vacant(0, 0, false), lead(10, 11, false), vacant(0, 15, true), lead(40, 41, false)}, 2, 0},
		{"the end missed in a gap", []sighting{vacant(0, 0, false), lead(10, 11, false), vacant(0, 45, true)}, 0, 3},
		{"the end missed", []sighting{vacant(0, 0, false), lead(10, 11, false), lead(20, 21, false)}, 2, 0},
		{"back", []sighting{vacant(0, 0, false), lead(10, 11, false), lead(20, 21, false), lead(30, 31, false), lead(40, 41, false), lead(20, 50, false)}, 1, 0},
	} {
		f := checkObserver(c.seen, all)
		if len(f.faults) != c.faults || f.missedInGaps != c.inGap {
			t.Errorf("%s: %d faults %v, %d missed in gaps; want %d, %d", c.name, len(f.faults), f.faults, f.missedInGaps, c.faults, c.inGap)
		}
	}
	led := []*termRecord{
		{holdRecord: &holdRecord{worker: &worker{owner: "a"}, token: 10}, since: at(10)},
		{holdRecord: &holdRecord{worker: &worker{owner: "b"}, token: 10}, since: at(10)},
	}
	if _, faults := collectTerms(led, nil); len(faults) != 1 {
		t.Errorf("one term given to two candidates: %v", faults)
	}
}
