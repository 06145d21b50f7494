package coordinator

import (
	"context"
	"sync"
	"time"
)

const (
	// subLinger is how long the release subscription outlives its last
	// waiter: a worker that waits again right after its hold (the usual
	// loop) finds it open, instead of opening a connection and
	// subscribing for every wait.
	subLinger = 250 * time.Millisecond
	// skipFor bounds how long a local hand-off expects the release's own
	// notification: one that did not come by then (lost) must not swallow
	// a later release's.
	skipFor = time.Second
)

// hub shares one release subscription among a coordinator's waiters and
// keeps them in a queue per resource. The subscription starts with the
// first waiter and ends subLinger after the last left. A release wakes the
// front of the resource's queue: its longest waiting waiter, and when that
// one waits for a shared hold, every shared waiter after it up to the
// first exclusive one (they may all get in together). So a hand-off costs
// one attempt per waiter that can take it, not one per waiter, and a
// waiting exclusive request is not overtaken by shared requests that came
// after it. A release through this coordinator wakes the front at once,
// without waiting for the notification, which it then ignores.
//
// A release through the coordinator takes mu, so nothing holds mu across
// a call to the store: the subscription is opened outside it, by one
// waiter, while the others that join meanwhile wait for it (starting).
type hub struct {
	c  *Coordinator
	qn WaitQueue // the store, when it queues waiters; else nil
	// open subscribes to the release notifications meant for this
	// coordinator; nil when the store sends none
	open     func(context.Context) (Subscription, error)
	mu       sync.Mutex
	closed   bool
	queues   map[Resource]*queue
	n        int
	seq      uint64 // releases seen (notified or local)
	gen      uint64 // subscriptions started
	sub      Subscription
	subEnd   chan struct{} // closed when the dispatch goroutine returned
	starting chan struct{} // closed when the subscription being opened is ready or failed
	linger   *time.Timer   // ends the subscription once idle
	idling   chan struct{} // closed when idle has ended a subscription
}

// queue is the coordinator's waiters for one resource, the longest waiting
// first. Its front is the first waiter, and the shared waiters right
// after a shared first one.
type queue struct {
	ws   []*waiter
	last *ConflictError // the latest conflict a waiter met
	gone string         // last's holder released the lease through this coordinator
	// skip counts notifications to ignore: their release was local and
	// already woke the head
	skip   int
	skipAt time.Time
}

type waiter struct {
	r      Resource
	shared bool          // waits for a shared hold of r
	ch     chan struct{} // one pending wake-up: try now
	head   chan struct{} // joined the front of its queue
}

// frontLen returns how many waiters form the front of q.
func (q *queue) frontLen() int {
	if len(q.ws) == 0 {
		return 0
	}
	n := 1
	if q.ws[0].shared {
		for n < len(q.ws) && q.ws[n].shared {
			n++
		}
	}
	return n
}

// wakeFront wakes every waiter at the front of q.
func (q *queue) wakeFront() {
	for _, w := range q.ws[:q.frontLen()] {
		wake(w)
	}
}

// hubState is what a waiter needs to know of the hub before its first
// attempt: whether a release it could have missed came in between.
type hubState struct {
	seq, gen uint64
	active   bool
}

func newHub(c *Coordinator) *hub {
	h := &hub{c: c, queues: make(map[Resource]*queue)}
	h.qn, _ = c.store.(WaitQueue)
	if n, ok := c.store.(Notifier); ok {
		h.open = n.Releases
	}
	if h.qn != nil {
		h.open = func(ctx context.Context) (Subscription, error) { return h.qn.ReleasesFor(ctx, c.id) }
	}
	return h
}

// count returns how many waiters wait for r.
func (h *hub) count(r Resource) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.queues[r]; q != nil {
		return len(q.ws)
	}
	return 0
}

// others reports whether waiters besides w wait for w's resource.
func (h *hub) others(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[w.r]
	return q != nil && len(q.ws) > 1
}

// handsOver reports whether a release of r should go to waiters here:
// some wait, the store queues them, and their subscription is open or
// being opened (the release need not wait for it: a turn it hands over
// wakes them at once, and one it leaves to another process means a later
// release for them).
func (h *hub) handsOver(r Resource) bool {
	if h.qn == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[r]
	return (h.sub != nil || h.starting != nil) && q != nil && len(q.ws) > 0
}

// state returns the hub's state before an attempt.
func (h *hub) state() hubState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hubState{seq: h.seq, gen: h.gen, active: h.sub != nil}
}

// behind returns the latest conflict met by the waiters queued for r, or
// nil when none waits, and whether its holder released the lease through
// this coordinator since.
func (h *hub) behind(r Resource) (*ConflictError, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.queues[r]; q != nil && len(q.ws) > 0 {
		return q.last, q.last != nil && q.gone == q.last.Holder
	}
	return nil, false
}

// joined is what a waiter learns when it joins the hub.
type joined struct {
	notified bool // release notifications are active
	// retry: the waiter must try at once, being the head of its queue
	// when a release may have gone unseen since its attempt (or it made
	// none), or being without notifications
	retry bool
}

// join queues a waiter for r (for a shared hold when shared) that
// arrived as a says, and subscribes to the release notifications if
// nobody has.
func (h *hub) join(ctx context.Context, r Resource, shared bool, a arrival) (*waiter, joined) {
	w, front := h.enqueue(r, shared, a)
	h.subscribe(ctx)
	return w, h.joinedAs(front, a)
}

// enqueue puts a new waiter for r at the end of its queue and reports
// whether it is at the front.
func (h *hub) enqueue(r Resource, shared bool, a arrival) (*waiter, bool) {
	w := &waiter{r: r, shared: shared, ch: make(chan struct{}, 1), head: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[r]
	if q == nil {
		q = &queue{}
		h.queues[r] = q
	}
	q.ws = append(q.ws, w)
	if a.ce != nil && a.tried {
		h.record(q, a.ce, a.snap)
	}
	h.n++
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	return w, len(q.ws) <= q.frontLen()
}

// subscribe opens the release subscription unless it is open, being
// opened (then it waits for that, or for ctx's end), or the store sends
// no notifications. The call to the store is made without holding mu.
func (h *hub) subscribe(ctx context.Context) {
	h.mu.Lock()
	if h.sub != nil || h.closed || h.open == nil {
		h.mu.Unlock()
		return
	}
	if ready := h.starting; ready != nil {
		h.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
		}
		return
	}
	ready := make(chan struct{})
	h.starting = ready
	h.mu.Unlock()
	defer close(ready)
	sub, err := h.open(ctx)
	if err != nil {
		h.c.cfg.log.Warn().Err(err).Msg("release notifications unavailable, waiting by polling")
	}
	h.opened(sub, err)
}

// opened puts the subscription that subscribe opened to work, or closes
// it when the hub was closed meanwhile.
func (h *hub) opened(sub Subscription, err error) {
	h.mu.Lock()
	h.starting = nil
	closed := h.closed
	if err == nil && !closed {
		h.sub, h.subEnd = sub, make(chan struct{})
		h.gen++
		go h.dispatch(sub, h.subEnd)
	}
	h.mu.Unlock()
	if err == nil && closed {
		_ = sub.Close()
	}
}

// joinedAs tells a waiter that joined (at the front of its queue or not)
// after an arrival a whether it is notified and must try at once. Any
// release since a's snapshot either counts in seq by now or woke the
// waiter, which was queued before this check.
func (h *hub) joinedAs(front bool, a arrival) joined {
	h.mu.Lock()
	defer h.mu.Unlock()
	notified := h.sub != nil
	// nothing was released since the snapshot, and a release now would be
	// notified to this queue
	s := a.snap
	quiet := notified && s.active && s.gen == h.gen && s.seq == h.seq
	return joined{notified: notified, retry: !notified || (front && (!quiet || a.gone))}
}

// conflict records the conflict w met in an attempt begun in state snap,
// for the waiters that join later.
func (h *hub) conflict(w *waiter, ce *ConflictError, snap hubState) {
	h.mu.Lock()
	if q := h.queues[w.r]; q != nil {
		h.record(q, ce, snap)
	}
	h.mu.Unlock()
}

// record makes ce, met by an attempt begun in state snap, q's latest
// conflict. A release by ce's holder through this coordinator that came
// in since snap may have ended the lease ce saw (the attempt and the
// release crossed), so q still counts it gone then: a later waiter that
// is ce's holder queues behind the others instead of trying first.
// h.mu is held.
func (h *hub) record(q *queue, ce *ConflictError, snap hubState) {
	if h.seq == snap.seq || q.gone != ce.Holder {
		q.gone = ""
	}
	q.last = ce
}

// inFront reports whether w is at the front of its queue.
func (h *hub) inFront(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[w.r]
	if q == nil {
		return false
	}
	for _, x := range q.ws[:q.frontLen()] {
		if x == w {
			return true
		}
	}
	return false
}

// leave removes w. The waiters it brings to the front of the queue get
// the wake-up it did not use, or else are told that they are at the
// front. The last waiter to leave schedules the end of the subscription.
// It reports whether w was the last waiter for its resource.
func (h *hub) leave(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[w.r]
	if q == nil {
		return false
	}
	before := q.frontLen()
	for i, x := range q.ws {
		if x == w {
			q.ws = append(q.ws[:i:i], q.ws[i+1:]...)
			if i < before {
				before--
			}
			break
		}
	}
	if len(q.ws) == 0 {
		delete(h.queues, w.r)
	} else {
		unused := false
		select {
		case <-w.ch:
			unused = true
		default:
		}
		for _, x := range q.ws[before:q.frontLen()] {
			if unused {
				wake(x)
			} else {
				signal(x.head)
			}
		}
	}
	h.n--
	if h.n == 0 && h.sub != nil && h.linger == nil {
		gen := h.gen
		h.linger = time.AfterFunc(subLinger, func() { h.idle(gen) })
	}
	return len(q.ws) == 0
}

// idle ends subscription gen if nobody waits.
func (h *hub) idle(gen uint64) {
	h.mu.Lock()
	if h.n != 0 || h.sub == nil || h.gen != gen {
		h.mu.Unlock()
		return
	}
	sub, end := h.sub, h.subEnd
	h.sub, h.subEnd, h.linger = nil, nil, nil
	done := make(chan struct{})
	h.idling = done
	h.mu.Unlock()
	_ = sub.Close()
	<-end
	close(done)
}

func wake(w *waiter) { signal(w.ch) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// released hands r over to the front of its queue at once, after owner's
// release through this coordinator deleted its lease; the release's
// notification, when it comes, is ignored (a WaitQueue sends none:
// the release named this coordinator, see handsOver).
//
// When the store's queue gave the turn to another process (handed
// false), the waiters here are not woken: the lease went to that
// process's waiter, and theirs comes with a later release's notification.
func (h *hub) released(r Resource, owner string, handed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	q := h.queues[r]
	if q == nil || len(q.ws) == 0 {
		return
	}
	q.gone = owner
	if !handed {
		return
	}
	q.wakeFront()
	if h.sub != nil && h.qn == nil {
		q.skip++
		q.skipAt = time.Now()
	}
}

func (h *hub) dispatch(sub Subscription, end chan struct{}) {
	defer close(end)
	for r := range sub.Released() {
		h.mu.Lock()
		h.seq++
		if q := h.queues[r]; q != nil && len(q.ws) > 0 {
			switch {
			case q.skip > 0 && time.Since(q.skipAt) < skipFor:
				q.skip--
			default:
				q.skip = 0
				q.wakeFront()
			}
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
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	idling := h.idling
	h.mu.Unlock()
	if sub != nil {
		_ = sub.Close()
		<-end
	}
	if idling != nil {
		<-idling // a subscription idle was ending
	}
}
