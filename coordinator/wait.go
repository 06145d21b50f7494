package coordinator

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Fallback retry delays of a waiting acquirer. With release notifications
// the fallback only has to notice a holder that died (its lease expires
// without a release), so it starts slower.
var (
	pollMin       = 10 * time.Millisecond
	pollMinNotify = 100 * time.Millisecond
	pollMax       = time.Second
)

// wait retries an acquisition refused with ce until it succeeds, d runs
// out or ctx ends. It wakes on the store's release notifications for the
// resource and otherwise retries with a jittered backoff bounded by the
// holder's remaining TTL (read on the worker's clock: a skew between it and
// Redis only moves a retry, which pollMax bounds anyway).
func (c *Coordinator) wait(ctx context.Context, req Request, first *ConflictError, d time.Duration) (Lease, error) {
	ce := first
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	w, notified := c.hub.join(wctx, req.Resource)
	defer c.hub.leave(w)
	backoff := pollMin
	if notified {
		backoff = pollMinNotify
	}
	for {
		// the lease may have been released before the subscription was
		// active, and after every wake-up: try at once
		req.RequestID = c.requestID()
		l, err := c.acquireOnce(ctx, req)
		if err == nil {
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
		ce = next
		delay := backoff/2 + rand.N(backoff/2+1)
		// the holder's lease ends by then unless renewed: look again
		if left := time.Until(ce.ExpiresAt) + time.Millisecond; left < delay {
			delay = max(left, time.Millisecond)
		}
		backoff = min(backoff*2, pollMax)
		t := time.NewTimer(delay)
		select {
		case <-w.ch:
		case <-t.C:
		case <-c.closing:
			t.Stop()
			c.m.waited(start, "cancelled")
			return Lease{}, errors.Join(ce, ErrClosed)
		case <-wctx.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				c.m.waited(start, "cancelled")
				return Lease{}, errors.Join(ce, err)
			}
			c.m.waited(start, "timeout")
			return Lease{}, ce
		}
		t.Stop()
	}
}

// hub shares one release subscription among a coordinator's waiters. The
// subscription lives while someone waits: it starts with the first waiter
// and ends with the last. A release wakes one waiter of the resource (the
// longest waiting), so a hand-off costs one attempt, not one per waiter.
type hub struct {
	c      *Coordinator
	mu     sync.Mutex
	closed bool
	queues map[Resource][]*waiter
	n      int
	sub    Subscription
	subEnd chan struct{} // closed when the dispatch goroutine returned
}

type waiter struct {
	r  Resource
	ch chan struct{} // one pending wake-up
}

func newHub(c *Coordinator) *hub {
	return &hub{c: c, queues: make(map[Resource][]*waiter)}
}

// join queues a waiter for r, subscribing first if it is the first. It
// reports whether release notifications are active.
func (h *hub) join(ctx context.Context, r Resource) (*waiter, bool) {
	w := &waiter{r: r, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queues[r] = append(h.queues[r], w)
	h.n++
	if h.sub == nil && !h.closed {
		if n, ok := h.c.store.(Notifier); ok {
			sub, err := n.Releases(ctx)
			if err != nil {
				h.c.cfg.log.Warn().Err(err).Msg("release notifications unavailable, waiting by polling")
			} else {
				h.sub, h.subEnd = sub, make(chan struct{})
				go h.dispatch(sub, h.subEnd)
			}
		}
	}
	return w, h.sub != nil
}

// leave removes w; a wake-up it did not use goes to the next waiter. The
// last waiter to leave ends the subscription.
func (h *hub) leave(w *waiter) {
	h.mu.Lock()
	q := h.queues[w.r]
	for i, x := range q {
		if x == w {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(h.queues, w.r)
	} else {
		h.queues[w.r] = q
		select {
		case <-w.ch:
			wake(q[0])
		default:
		}
	}
	h.n--
	var sub Subscription
	var end chan struct{}
	if h.n == 0 && h.sub != nil {
		sub, end, h.sub, h.subEnd = h.sub, h.subEnd, nil, nil
	}
	h.mu.Unlock()
	if sub != nil {
		_ = sub.Close()
		<-end
	}
}

func wake(w *waiter) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (h *hub) dispatch(sub Subscription, end chan struct{}) {
	defer close(end)
	for r := range sub.Released() {
		h.mu.Lock()
		if q := h.queues[r]; len(q) > 0 {
			wake(q[0])
		}
		h.mu.Unlock()
	}
}

// close ends the subscription and keeps new waits from subscribing (the
// waits themselves end on the coordinator's closing channel).
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	sub, end := h.sub, h.subEnd
	h.sub, h.subEnd = nil, nil
	h.mu.Unlock()
	if sub != nil {
		_ = sub.Close()
		<-end
	}
}
