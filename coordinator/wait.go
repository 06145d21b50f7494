package coordinator

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Fallback retry delays of a waiting acquirer. With release notifications
// the fallback only has to notice a holder that died (its lease expires
// without a release), so it starts slower.
// Queued in the store (a WaitQueue), a waiter is told of the release
// meant for it, so the fallback only covers a lost notification.
var (
	pollMin       = 10 * time.Millisecond
	pollMinNotify = 100 * time.Millisecond
	pollMinQueued = 500 * time.Millisecond
	pollMax       = time.Second
)

// unqueueTimeout bounds the call that takes a coordinator out of a
// store's waiter queue.
const unqueueTimeout = time.Second

// acquireWaiting takes the lease, waiting up to d for it. It queues
// behind the coordinator's waiters for the resource without trying first,
// unless the holder they met is its own owner (a re-entry): it could not
// get the lease before them but by barging, which would cost them an
// attempt. An upgrade conflict is returned at once.
func (c *Coordinator) acquireWaiting(ctx context.Context, req Request, d time.Duration) (Lease, error) {
	a := acq{reqs: []Request{req}}
	snap := c.hub.state()
	if ce, gone := c.hub.behind(req.Resource); ce != nil && (gone || ce.Holder != req.Owner) && c.Held(req.Resource, req.Owner) == 0 {
		ls, err := c.wait(ctx, a, d, arrival{ce: ce, gone: gone, snap: snap})
		return first(ls), err
	}
	ar := arrival{tried: true, snap: snap}
	if c.hub.qn != nil && snap.active {
		// a refusal queues this coordinator for the resource at once;
		// not before the coordinator listens, or a release would find it
		// deaf, count it dead and drop it (it queues by its retry once
		// subscribed)
		ar.qp = queuing{waiter: c.id, q: Queueing{StayQueued: c.hub.count(req.Resource) > 0}}
	}
	l, err := c.acquireOnce(ctx, req, ar.qp)
	if ce, ok := errors.AsType[*ConflictError](err); ok && !ce.Upgrade {
		ar.ce = ce
		ls, err := c.wait(ctx, a, d, ar)
		return first(ls), err
	}
	return l, err
}

// acquireAllWaiting takes every lease of reqs, waiting up to d for them.
// It waits for one busy resource at a time, the one its last attempt met,
// holding nothing, and then tries the whole set again: no acquirer holds
// a resource while it waits for another, so waits cannot deadlock. Like
// acquireWaiting it queues behind the coordinator's waiters for a
// resource it does not hold without trying first.
func (c *Coordinator) acquireAllWaiting(ctx context.Context, reqs []Request, d time.Duration) ([]Lease, error) {
	a := acq{reqs: reqs, all: true}
	snap := c.hub.state()
	for _, req := range reqs {
		if ce, gone := c.hub.behind(req.Resource); ce != nil && (gone || ce.Holder != req.Owner) && c.Held(req.Resource, req.Owner) == 0 {
			return c.wait(ctx, a, d, arrival{ce: ce, gone: gone, snap: snap})
		}
	}
	ar := arrival{tried: true, snap: snap}
	if c.hub.qn != nil && snap.active {
		ar.qp = queuing{waiter: c.id} // as in acquireWaiting
	}
	ls, err := c.acquireAllOnce(ctx, reqs, ar.qp)
	if ce, ok := errors.AsType[*ConflictError](err); ok && !ce.Upgrade {
		ar.ce = ce
		return c.wait(ctx, a, d, ar)
	}
	return ls, err
}

// first returns the first lease of ls, or the zero Lease.
func first(ls []Lease) Lease {
	if len(ls) == 0 {
		return Lease{}
	}
	return ls[0]
}

// acq is what a wait acquires: one request, or several together
// (AcquireAll).
type acq struct {
	reqs []Request
	all  bool
}

// shared reports whether a asks for r in shared mode.
func (a acq) shared(r Resource) bool {
	for _, req := range a.reqs {
		if req.Resource == r {
			return req.Mode == ModeShared
		}
	}
	return false
}

// arrival is how an acquirer comes to wait, after the hub was in state
// snap. Tried, it made an attempt (queued in the store as qp says) that
// met ce. Otherwise ce is what the waiters already queued for the
// resource met, and the acquirer queues behind them without an attempt of
// its own; gone says that ce's holder released the lease through this
// coordinator since.
type arrival struct {
	ce    *ConflictError
	tried bool
	gone  bool
	snap  hubState
	qp    queuing
}

// wait retries an acquisition refused with ar.ce until it succeeds, d runs
// out or ctx ends. The coordinator's waiters for a resource form a queue:
// a release wakes its front (at once when the release went through this
// coordinator, else on the store's notification), and only the front
// retries on a fallback timer, a jittered backoff bounded by the holder's
// remaining TTL (read on the worker's clock: a skew between it and Redis
// only moves a retry, which pollMax bounds anyway). Without notifications
// every waiter polls. An AcquireAll waits in the queue of the resource
// its last attempt met busy, and moves to another's when a retry meets
// that one busy.
func (c *Coordinator) wait(ctx context.Context, a acq, d time.Duration, ar arrival) ([]Lease, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ws := c.startWaiting(wctx, a, ar)
	defer func() { ws.leave(ctx) }()
	for {
		if ws.retry {
			if end := ws.try(ctx, wctx); end != nil {
				return end.ls, end.err
			}
		}
		if end := ws.pause(ctx, wctx); end != nil {
			return end.ls, end.err
		}
	}
}

// waiting is one wait in progress.
type waiting struct {
	c     *Coordinator
	a     acq
	qp    queuing // how the next attempt queues in the store
	w     *waiter
	start time.Time

	ce       *ConflictError // the latest conflict met
	notified bool           // release notifications reach the waiter
	queued   bool           // the coordinator queues in the store (a WaitQueue)
	stays    bool           // and stays queued there when w leaves
	retry    bool           // try before pausing again
	bounded  bool           // ce's expiry bounds the next retry
	backoff  time.Duration  // the fallback timer's next base delay
}

// waitEnd is how a wait ended: the leases, or the error.
type waitEnd struct {
	ls  []Lease
	err error
}

// startWaiting queues a waiter for the resource of ar.ce in the hub.
func (c *Coordinator) startWaiting(wctx context.Context, a acq, ar arrival) *waiting {
	ws := &waiting{c: c, a: a, qp: ar.qp, start: time.Now()}
	ws.join(wctx, ar)
	return ws
}

// join queues ws's waiter for the resource of ar.ce.
func (ws *waiting) join(wctx context.Context, ar arrival) {
	c := ws.c
	r := ar.ce.Resource
	w, j := c.hub.join(wctx, r, ws.a.shared(r), ar)
	ws.w, ws.ce = w, ar.ce
	ws.notified, ws.retry, ws.bounded, ws.backoff = j.notified, j.retry, true, pollMin
	ws.queued = j.notified && c.hub.qn != nil
	ws.stays = ws.queued
	switch {
	case ws.queued:
		ws.backoff = max(pollMinNotify, min(pollMinQueued, pollMax))
	case ws.notified:
		ws.backoff = pollMinNotify
	}
}

// leave takes the waiter out of the hub. The last waiter here for the
// resource that leaves without the lease takes the coordinator out of the
// store's queue: a release must not pick it.
func (ws *waiting) leave(ctx context.Context) {
	if !ws.c.hub.leave(ws.w) || !ws.stays {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unqueueTimeout)
	defer cancel()
	if err := ws.c.hub.qn.Unqueue(uctx, ws.w.r, ws.c.id); err != nil {
		ws.c.cfg.log.Warn().Err(err).Msg("leaving the waiter queue failed")
	}
}

// end records how the wait ended (the metric's result label) and
// returns it.
func (ws *waiting) end(result string, ls []Lease, err error) *waitEnd {
	ws.c.m.waited(ws.start, result)
	return &waitEnd{ls: ls, err: err}
}

// attempt sends one acquisition of every request, with a new request ID.
func (ws *waiting) attempt(ctx context.Context) ([]Lease, error) {
	id := ws.c.requestID()
	for i := range ws.a.reqs {
		ws.a.reqs[i].RequestID = id
	}
	if ws.a.all {
		return ws.c.acquireAllOnce(ctx, ws.a.reqs, ws.qp)
	}
	l, err := ws.c.acquireOnce(ctx, ws.a.reqs[0], ws.qp)
	if err != nil {
		return nil, err
	}
	return []Lease{l}, nil
}

// try makes one attempt. It returns the end of the wait, or nil when the
// attempt was refused and the wait goes on.
func (ws *waiting) try(ctx, wctx context.Context) *waitEnd {
	if ws.queued {
		ws.qp = queuing{waiter: ws.c.id, q: Queueing{StayQueued: ws.c.hub.others(ws.w)}, at: ws.w.r}
	}
	snap := ws.c.hub.state()
	ls, err := ws.attempt(ctx)
	if err == nil {
		ws.stays = ws.qp.q.StayQueued
		return ws.end("acquired", ls, nil)
	}
	next, ok := errors.AsType[*ConflictError](err)
	switch {
	case !ok:
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			// the context ended during an attempt
			return ws.end("cancelled", nil, errors.Join(ws.ce, cerr))
		}
		return ws.end("error", nil, err)
	case next.Upgrade:
		return ws.end("upgrade", nil, err)
	case next.Resource != ws.w.r:
		// an AcquireAll met another resource busy: wait for that one
		ws.leave(ctx)
		ws.join(wctx, arrival{ce: next, tried: true, snap: snap, qp: ws.qp})
		return nil
	}
	ws.ce, ws.bounded = next, true
	if next.Holder == "" && ws.backoff > pollMin {
		// free, but waiters queued ahead (a fair store): the first of
		// them is taking it now, unless it died; look again soon, then
		// back off as usual
		ws.backoff = pollMin
	}
	ws.c.hub.conflict(ws.w, next, snap)
	return nil
}

// pause waits for a wake-up, the fallback timer, or the end of the wait
// (ctx's or wctx's end, Close), which it returns.
func (ws *waiting) pause(ctx, wctx context.Context) *waitEnd {
	ws.retry = true
	t := ws.fallback()
	defer stop(t)
	var timeout <-chan time.Time
	if t != nil {
		timeout = t.C
	}
	select {
	case <-ws.w.ch:
	case <-timeout:
	case <-ws.w.head:
		// the waiter before left holding the lease: start polling
		// behind its holder, whose expiry ce does not know
		ws.retry, ws.bounded = false, false
	case <-ws.c.closing:
		return ws.end("cancelled", nil, errors.Join(ws.ce, ErrClosed))
	case <-wctx.Done():
		if err := ctx.Err(); err != nil {
			return ws.end("cancelled", nil, errors.Join(ws.ce, err))
		}
		return ws.end("timeout", nil, ws.ce)
	}
	return nil
}

// fallback starts the retry timer of a waiter that polls (every waiter
// without notifications, else the front of the queue only), or returns
// nil.
func (ws *waiting) fallback() *time.Timer {
	if ws.notified && !ws.c.hub.inFront(ws.w) {
		return nil
	}
	delay := ws.backoff/2 + rand.N(ws.backoff/2+1)
	// the holder's lease ends by then unless renewed: look again
	if left := time.Until(ws.ce.ExpiresAt) + time.Millisecond; ws.bounded && ws.ce.Holder != "" && left < delay {
		delay = max(left, time.Millisecond)
	}
	ws.backoff = min(ws.backoff*2, pollMax)
	return time.NewTimer(delay)
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
