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

// wait retries an acquisition refused with ce until it succeeds, d runs
// out or ctx ends. The coordinator's waiters for a resource form a queue:
// a release wakes the head (at once when the release went through this
// coordinator, else on the store's notification), and only the head
// retries on a fallback timer, a jittered backoff bounded by the holder's
// remaining TTL (read on the worker's clock: a skew between it and Redis
// only moves a retry, which pollMax bounds anyway). Without notifications
// every waiter polls.
//
// tried says whether the caller made an attempt (which met ce, queued as
// qp says) after snap; otherwise ce is what the waiters already queued for
// the resource met, and the waiter queues behind them without an attempt
// of its own.
func (c *Coordinator) wait(ctx context.Context, req Request, qp queuing, ce *ConflictError, d time.Duration, tried bool, snap hubState) (Lease, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	w, notified, retry := c.hub.join(wctx, req.Resource, ce, tried, snap)
	queued := notified && c.hub.qn != nil // this coordinator queues in the store
	stays := queued                       // and stays queued when w leaves
	defer func() {
		if c.hub.leave(w) && stays {
			// the last waiter here for the resource leaves without the
			// lease: a release must not pick this coordinator
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unqueueTimeout)
			defer cancel()
			if err := c.hub.qn.Unqueue(uctx, req.Resource, c.id); err != nil {
				c.cfg.log.Warn().Err(err).Msg("leaving the waiter queue failed")
			}
		}
	}()
	backoff := pollMin
	switch {
	case queued:
		backoff = max(pollMinNotify, min(pollMinQueued, pollMax))
	case notified:
		backoff = pollMinNotify
	}
	bounded := true // ce's expiry bounds the next retry
	for {
		if retry {
			req.RequestID = c.requestID()
			if queued {
				qp = queuing{waiter: c.id, q: Queueing{StayQueued: c.hub.others(w)}}
			}
			l, err := c.acquireOnce(ctx, req, qp)
			if err == nil {
				stays = qp.q.StayQueued
				c.m.waited(start, "acquired")
				return l, nil
			}
			next, ok := errors.AsType[*ConflictError](err)
			if !ok {
				if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
					// the context ended during an attempt
					c.m.waited(start, "cancelled")
					return Lease{}, errors.Join(ce, cerr)
				}
				c.m.waited(start, "error")
				return Lease{}, err
			}
			ce, bounded = next, true
			c.hub.conflict(w, ce)
		}
		retry = true
		var t *time.Timer
		var timeout <-chan time.Time
		if !notified || c.hub.isHead(w) {
			delay := backoff/2 + rand.N(backoff/2+1)
			// the holder's lease ends by then unless renewed: look again
			if left := time.Until(ce.ExpiresAt) + time.Millisecond; bounded && left < delay {
				delay = max(left, time.Millisecond)
			}
			backoff = min(backoff*2, pollMax)
			t = time.NewTimer(delay)
			timeout = t.C
		}
		select {
		case <-w.ch:
		case <-timeout:
		case <-w.head:
			// the waiter before left holding the lease: start polling
			// behind its holder, whose expiry ce does not know
			retry, bounded = false, false
		case <-c.closing:
			stop(t)
			c.m.waited(start, "cancelled")
			return Lease{}, errors.Join(ce, ErrClosed)
		case <-wctx.Done():
			stop(t)
			if err := ctx.Err(); err != nil {
				c.m.waited(start, "cancelled")
				return Lease{}, errors.Join(ce, err)
			}
			c.m.waited(start, "timeout")
			return Lease{}, ce
		}
		stop(t)
	}
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
