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
// attempt.
func (c *Coordinator) acquireWaiting(ctx context.Context, req Request, d time.Duration) (Lease, error) {
	if ce, gone := c.hub.behind(req.Resource); ce != nil && (gone || ce.Holder != req.Owner) && c.Held(req.Resource, req.Owner) == 0 {
		return c.wait(ctx, req, d, arrival{ce: ce})
	}
	a := arrival{tried: true, snap: c.hub.state()}
	if c.hub.qn != nil {
		// a refusal queues this coordinator for the resource at once
		a.qp = queuing{waiter: c.id, q: Queueing{StayQueued: c.hub.count(req.Resource) > 0}}
	}
	l, err := c.acquireOnce(ctx, req, a.qp)
	if ce, ok := errors.AsType[*ConflictError](err); ok {
		a.ce = ce
		l, err = c.wait(ctx, req, d, a)
	}
	return l, err
}

// arrival is how an acquirer comes to wait. Tried, it made an attempt
// (queued in the store as qp says) that met ce after the hub was in state
// snap. Otherwise ce is what the waiters already queued for the resource
// met, and the acquirer queues behind them without an attempt of its own.
type arrival struct {
	ce    *ConflictError
	tried bool
	snap  hubState
	qp    queuing
}

// wait retries an acquisition refused with a.ce until it succeeds, d runs
// out or ctx ends. The coordinator's waiters for a resource form a queue:
// a release wakes the head (at once when the release went through this
// coordinator, else on the store's notification), and only the head
// retries on a fallback timer, a jittered backoff bounded by the holder's
// remaining TTL (read on the worker's clock: a skew between it and Redis
// only moves a retry, which pollMax bounds anyway). Without notifications
// every waiter polls.
func (c *Coordinator) wait(ctx context.Context, req Request, d time.Duration, a arrival) (Lease, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ws := c.startWaiting(wctx, req, a)
	defer ws.leave(ctx)
	for {
		if ws.retry {
			if end := ws.try(ctx); end != nil {
				return end.l, end.err
			}
		}
		if end := ws.pause(ctx, wctx); end != nil {
			return end.l, end.err
		}
	}
}

// waiting is one wait in progress.
type waiting struct {
	c     *Coordinator
	req   Request
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

// waitEnd is how a wait ended: the lease, or the error.
type waitEnd struct {
	l   Lease
	err error
}

// startWaiting queues a waiter for req's resource in the hub.
func (c *Coordinator) startWaiting(wctx context.Context, req Request, a arrival) *waiting {
	start := time.Now()
	w, j := c.hub.join(wctx, req.Resource, a)
	ws := &waiting{c: c, req: req, qp: a.qp, w: w, start: start, ce: a.ce,
		notified: j.notified, retry: j.retry, bounded: true, backoff: pollMin}
	ws.queued = j.notified && c.hub.qn != nil
	ws.stays = ws.queued
	switch {
	case ws.queued:
		ws.backoff = max(pollMinNotify, min(pollMinQueued, pollMax))
	case ws.notified:
		ws.backoff = pollMinNotify
	}
	return ws
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
	if err := ws.c.hub.qn.Unqueue(uctx, ws.req.Resource, ws.c.id); err != nil {
		ws.c.cfg.log.Warn().Err(err).Msg("leaving the waiter queue failed")
	}
}

// end records how the wait ended (the metric's result label) and
// returns it.
func (ws *waiting) end(result string, l Lease, err error) *waitEnd {
	ws.c.m.waited(ws.start, result)
	return &waitEnd{l: l, err: err}
}

// try makes one attempt. It returns the end of the wait, or nil when the
// attempt was refused and the wait goes on.
func (ws *waiting) try(ctx context.Context) *waitEnd {
	ws.req.RequestID = ws.c.requestID()
	if ws.queued {
		ws.qp = queuing{waiter: ws.c.id, q: Queueing{StayQueued: ws.c.hub.others(ws.w)}}
	}
	l, err := ws.c.acquireOnce(ctx, ws.req, ws.qp)
	if err == nil {
		ws.stays = ws.qp.q.StayQueued
		return ws.end("acquired", l, nil)
	}
	next, ok := errors.AsType[*ConflictError](err)
	if !ok {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			// the context ended during an attempt
			return ws.end("cancelled", Lease{}, errors.Join(ws.ce, cerr))
		}
		return ws.end("error", Lease{}, err)
	}
	ws.ce, ws.bounded = next, true
	ws.c.hub.conflict(ws.w, next)
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
		return ws.end("cancelled", Lease{}, errors.Join(ws.ce, ErrClosed))
	case <-wctx.Done():
		if err := ctx.Err(); err != nil {
			return ws.end("cancelled", Lease{}, errors.Join(ws.ce, err))
		}
		return ws.end("timeout", Lease{}, ws.ce)
	}
	return nil
}

// fallback starts the retry timer of a waiter that polls (every waiter
// without notifications, else the head only), or returns nil.
func (ws *waiting) fallback() *time.Timer {
	if ws.notified && !ws.c.hub.isHead(ws.w) {
		return nil
	}
	delay := ws.backoff/2 + rand.N(ws.backoff/2+1)
	// the holder's lease ends by then unless renewed: look again
	if left := time.Until(ws.ce.ExpiresAt) + time.Millisecond; ws.bounded && left < delay {
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
