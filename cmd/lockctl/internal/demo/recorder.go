package demo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// maxSamples bounds the latency samples kept (a long demo keeps the first).
const maxSamples = 1 << 20

// Recorder counts the store calls of every worker and checks that fresh
// acquisitions of a resource get strictly increasing fencing tokens: an
// exclusive hold's token above every token recorded before for the
// resource, a shared hold's above every exclusive one's (shared holds of
// several owners are taken at once, and recorded in any order).
type Recorder struct {
	mu                   sync.Mutex
	acquired, reentered  int
	conflicts            int
	renewed, renewFailed int
	released, decrements int
	errors               int
	latencies            []time.Duration                 // successful acquisitions
	last                 map[coordinator.Resource]uint64 // the highest token of any hold
	lastExclusive        map[coordinator.Resource]uint64 // the highest token of an exclusive hold
	tokenViolations      []string
	tokenChecks          int
	errorSamples         []string
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{last: map[coordinator.Resource]uint64{}, lastExclusive: map[coordinator.Resource]uint64{}}
}

func (r *Recorder) acquire(req coordinator.Request, l coordinator.Lease, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case errors.Is(err, coordinator.ErrConflict):
		r.conflicts++
		return
	case err != nil:
		r.failed(err)
		return
	}
	if len(r.latencies) < maxSamples {
		r.latencies = append(r.latencies, d)
	}
	if l.Count > 1 {
		r.reentered++
		return
	}
	r.acquired++
	r.tokenChecks++
	prev, ok := r.lastExclusive[req.Resource]
	if l.Mode == coordinator.ModeExclusive {
		prev, ok = r.last[req.Resource]
	}
	if ok && l.Token <= prev && len(r.tokenViolations) < 20 {
		r.tokenViolations = append(r.tokenViolations,
			fmt.Sprintf("%s acquired %s by %s with token %d after token %d", req.Resource, l.Mode, req.Owner, l.Token, prev))
	}
	r.last[req.Resource] = max(r.last[req.Resource], l.Token)
	if l.Mode == coordinator.ModeExclusive {
		r.lastExclusive[req.Resource] = max(r.lastExclusive[req.Resource], l.Token)
	}
}

// failed records a store call that failed for another reason than the
// lease's state; a call cut short by its context (the demo ending, a lease
// lost) is not a failure.
func (r *Recorder) failed(err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	r.errors++
	if len(r.errorSamples) < 5 {
		r.errorSamples = append(r.errorSamples, err.Error())
	}
}

func (r *Recorder) renew(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.renewFailed++
		return
	}
	r.renewed++
}

func (r *Recorder) release(l coordinator.Lease, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		if !errors.Is(err, coordinator.ErrNotHeld) {
			r.failed(err)
		}
	case l.Count > 0:
		r.decrements++
	default:
		r.released++
	}
}

// RecorderStats are a recorder's counts.
type RecorderStats struct {
	Acquired, Reentered, Conflicts int
	Renewed, RenewFailed           int
	Released, Decrements           int
	Errors                         int
	ErrorSamples                   []string // the first errors
	Resources                      int      // resources acquired at least once
	P50, P99                       time.Duration
	TokenViolations                []string
}

// Events is the number of audit events the successful calls wrote: one
// per acquisition, re-entry, renewal, decrement and release.
func (s RecorderStats) Events() int {
	return s.Acquired + s.Reentered + s.Renewed + s.Released + s.Decrements
}

// Stats returns the counts so far.
func (r *Recorder) Stats() RecorderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := RecorderStats{Acquired: r.acquired, Reentered: r.reentered, Conflicts: r.conflicts,
		Renewed: r.renewed, RenewFailed: r.renewFailed, Released: r.released, Decrements: r.decrements,
		Errors: r.errors, ErrorSamples: append([]string(nil), r.errorSamples...), Resources: len(r.last), TokenViolations: append([]string(nil), r.tokenViolations...)}
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	s.P50, s.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return s
}

// percentile returns the p-quantile (nearest rank) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// workerStore is one worker's view of the store: it records every call
// and can be frozen, as the process of a paused worker would be.
type workerStore struct {
	inner *redisstore.Store
	rec   *Recorder

	mu     sync.Mutex
	frozen chan struct{} // closed when thawed; nil when not frozen
}

var (
	_ coordinator.Store     = (*workerStore)(nil)
	_ coordinator.Notifier  = (*workerStore)(nil)
	_ coordinator.WaitQueue = (*workerStore)(nil)
)

// freeze blocks every call of the store until thaw.
func (w *workerStore) freeze() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frozen == nil {
		w.frozen = make(chan struct{})
	}
}

func (w *workerStore) thaw() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frozen != nil {
		close(w.frozen)
		w.frozen = nil
	}
}

// gate waits while the store is frozen; the call's context does not end
// the wait (a frozen process does not notice its deadlines either).
func (w *workerStore) gate() {
	w.mu.Lock()
	ch := w.frozen
	w.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (w *workerStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	w.gate()
	start := time.Now()
	l, err := w.inner.Acquire(ctx, req)
	w.rec.acquire(req, l, time.Since(start), err)
	return l, err
}

func (w *workerStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	w.gate()
	l, err := w.inner.Renew(ctx, req)
	w.rec.renew(err)
	return l, err
}

func (w *workerStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	w.gate()
	l, err := w.inner.Release(ctx, req)
	w.rec.release(l, err)
	return l, err
}

func (w *workerStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	w.gate()
	return w.inner.Inspect(ctx, r)
}

func (w *workerStore) ReleaseAll(ctx context.Context, owner, requestID string) (int, error) {
	w.gate()
	return w.inner.ReleaseAll(ctx, owner, requestID)
}

func (w *workerStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	w.gate()
	start := time.Now()
	ls, err := w.inner.AcquireAll(ctx, reqs)
	return w.acquiredAll(reqs, ls, time.Since(start), err)
}

// acquiredAll records the outcome of an AcquireAll.
func (w *workerStore) acquiredAll(reqs []coordinator.Request, ls []coordinator.Lease, d time.Duration, err error) ([]coordinator.Lease, error) {
	if err != nil {
		w.rec.acquire(reqs[0], coordinator.Lease{}, d, err)
		return ls, err
	}
	for i, l := range ls {
		w.rec.acquire(reqs[i], l, d, nil)
	}
	return ls, nil
}

func (w *workerStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	w.gate()
	return w.inner.Holders(ctx, r)
}

// Releases passes the release notifications of the inner store through.
func (w *workerStore) Releases(ctx context.Context) (coordinator.Subscription, error) {
	return w.inner.Releases(ctx)
}

// ReleasesFor passes the notifications addressed to waiter through: the
// store's fair queue, so that a project-wide job waiting for a project
// is not overtaken by the plan transitions that keep taking it shared.
func (w *workerStore) ReleasesFor(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	return w.inner.ReleasesFor(ctx, waiter)
}

func (w *workerStore) AcquireQueued(ctx context.Context, req coordinator.Request, waiter string, q coordinator.Queueing) (coordinator.Lease, error) {
	w.gate()
	start := time.Now()
	l, err := w.inner.AcquireQueued(ctx, req, waiter, q)
	w.rec.acquire(req, l, time.Since(start), err)
	return l, err
}

func (w *workerStore) ReleaseHandOff(ctx context.Context, req coordinator.Request, waiter string) (coordinator.Lease, bool, error) {
	w.gate()
	l, handed, err := w.inner.ReleaseHandOff(ctx, req, waiter)
	w.rec.release(l, err)
	return l, handed, err
}

func (w *workerStore) Unqueue(ctx context.Context, r coordinator.Resource, waiter string) error {
	w.gate()
	return w.inner.Unqueue(ctx, r, waiter)
}

func (w *workerStore) AcquireAllQueued(ctx context.Context, reqs []coordinator.Request, waiter string, at coordinator.Resource, q coordinator.Queueing) ([]coordinator.Lease, error) {
	w.gate()
	start := time.Now()
	ls, err := w.inner.AcquireAllQueued(ctx, reqs, waiter, at, q)
	return w.acquiredAll(reqs, ls, time.Since(start), err)
}
