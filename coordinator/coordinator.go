package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Coordinator takes, renews and releases leases through a Store. It is safe
// for concurrent use. It remembers the holds taken through it so that Close
// can release them.
type Coordinator struct {
	store Store
	cfg   config

	reqPrefix string
	reqSeq    atomic.Uint64
	id        string // the coordinator's waiter id in a WaitQueue

	m   *metrics
	hub *hub

	closing chan struct{} // closed when Close starts

	mu       sync.Mutex
	closed   bool
	holds    map[holdKey]int
	keepers  map[holdKey]*keeper
	inflight sync.WaitGroup // calls in flight
	done     func()         // inflight.Done, the method value made once
	bg       sync.WaitGroup // keep-alive goroutines and their requests
}

type holdKey struct {
	r     Resource
	owner string
}

// New returns a Coordinator on store. Options are applied in order; see
// each for its default.
func New(store Store, opts ...Option) *Coordinator {
	c := &Coordinator{
		store:   store,
		cfg:     newConfig(opts),
		holds:   make(map[holdKey]int),
		keepers: make(map[holdKey]*keeper),
		closing: make(chan struct{}),
	}
	c.m = newMetrics(c.cfg.registerer)
	c.hub = newHub(c)
	if store == nil {
		c.cfg.fail(invalid("store", "nil", "must not be nil"))
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	c.id = hex.EncodeToString(b[:])
	c.reqPrefix = c.id + "-"
	c.done = c.inflight.Done
	return c
}

func (c *Coordinator) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

func (c *Coordinator) requestID() string {
	var buf [64]byte // one allocation, the string, for usual prefixes
	b := strconv.AppendUint(append(buf[:0], c.reqPrefix...), c.reqSeq.Add(1), 36)
	return string(b)
}

// begin registers an operation in flight; the returned func ends it.
func (c *Coordinator) begin() (func(), error) {
	if c.cfg.err != nil {
		return nil, c.cfg.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.inflight.Add(1)
	return c.done, nil
}

func (c *Coordinator) request(r Resource, owner string, opts []AcquireOption) (Request, callConfig, error) {
	if err := r.Validate(); err != nil {
		return Request{}, callConfig{}, err
	}
	if err := ValidateOwner(owner); err != nil {
		return Request{}, callConfig{}, err
	}
	cc := callConfig{ttl: c.cfg.ttlFor(r.Type)}
	if len(opts) > 0 {
		cc = withOptions(cc, opts)
	}
	if cc.err != nil {
		return Request{}, cc, cc.err
	}
	req := Request{Resource: r, Owner: owner, TTL: cc.ttl, RequestID: c.requestID(),
		Mode: cc.mode(), Permits: cc.permits, Meta: cc.meta}
	return req, cc, nil
}

// withOptions returns cc with opts applied (cc escapes to the options:
// a call without options does not allocate it).
func withOptions(cc callConfig, opts []AcquireOption) callConfig {
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	return cc
}

// call is an operation in flight: the request it sends, its options, and
// done, which ends it.
type call struct {
	req  Request
	cc   callConfig
	done func()
}

// startCall is the prologue of Acquire, Renew, Release and Hold: it
// validates the arguments (no I/O for bad input), builds the request and
// registers the call in flight, so that Close waits for it. The caller
// must call done.
func (c *Coordinator) startCall(r Resource, owner string, opts []AcquireOption) (call, error) {
	req, cc, err := c.request(r, owner, opts)
	if err != nil {
		return call{}, err
	}
	done, err := c.begin()
	if err != nil {
		return call{}, err
	}
	return call{req: req, cc: cc, done: done}, nil
}

// Acquire takes r for owner. A free resource is taken with hold count 1
// and a new fencing token; the owner's own lease is re-entered (count + 1,
// same token, TTL refreshed, never shortened). A lease of another owner
// gives a *ConflictError (errors.Is(err, ErrConflict)) naming the holder,
// at once, or after waiting for its release with the Wait option.
//
// With Shared or Permits the resource is taken in shared mode: it
// conflicts only with another owner's exclusive lease (or a full cap).
// The owner's hold is one lease, whatever the modes it asked in: an
// exclusive holder asking shared re-enters its exclusive lease, and the
// sole shared holder asking exclusive upgrades its lease (count + 1, a new
// token). A shared holder asking exclusive beside other holders gets a
// *ConflictError with Upgrade set at once, also with Wait: two holders
// upgrading at once would wait for each other forever.
func (c *Coordinator) Acquire(ctx context.Context, r Resource, owner string, opts ...AcquireOption) (Lease, error) {
	cl, err := c.startCall(r, owner, opts)
	if err != nil {
		return Lease{}, err
	}
	defer cl.done()
	return c.acquire(ctx, cl.req, cl.cc)
}

// acquire takes the lease, waiting as cc says.
func (c *Coordinator) acquire(ctx context.Context, req Request, cc callConfig) (Lease, error) {
	if cc.wait <= 0 {
		return c.acquireOnce(ctx, req, queuing{})
	}
	return c.acquireWaiting(ctx, req, cc.wait)
}

// queuing is how an acquisition waits in the store's WaitQueue: as the
// waiter of this coordinator, with q; an AcquireAll waiting for the
// resource at. The zero value does not queue.
type queuing struct {
	waiter string
	q      Queueing
	at     Resource
}

// acquireOnce sends one acquisition, queued as qp says, and records its
// outcome.
func (c *Coordinator) acquireOnce(ctx context.Context, req Request, qp queuing) (Lease, error) {
	start := time.Now()
	var (
		l   Lease
		err error
	)
	if qp.waiter != "" {
		l, err = c.hub.qn.AcquireQueued(ctx, req, qp.waiter, qp.q)
	} else {
		l, err = c.store.Acquire(ctx, req)
	}
	c.m.observeAcquire(start, req.Mode, err)
	if err != nil {
		return Lease{}, err
	}
	l.ttl, l.sent = req.TTL, start
	c.acquired(l)
	return l, nil
}

// acquired tracks the new hold of l. A re-entry of a kept-alive lease
// raises the keep-alive's TTL to l's (a re-entry never shortens the
// lease); an upgrade (a re-entry with a new token and the lease's
// acquired_at) moves it to the new token, which it would otherwise renew
// in vain and declare lost. A new lease (count 1, or another acquired_at)
// leaves it alone: its keeper must find the old lease lost.
func (c *Coordinator) acquired(l Lease) {
	k := holdKey{l.Resource, l.Owner}
	c.track(k, 1)
	if l.Count < 2 {
		return
	}
	c.mu.Lock()
	kp := c.keepers[k]
	c.mu.Unlock()
	if kp == nil {
		return
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.err != nil || !kp.lease.AcquiredAt.Equal(l.AcquiredAt) || kp.lease.Token > l.Token {
		return
	}
	if kp.lease.Token < l.Token {
		kp.lease = l
	}
	kp.ttl = max(kp.ttl, l.ttl)
}

// Renew sets the expiry of owner's lease on r to now + TTL (Redis time),
// leaving the hold count alone. A free resource gives ErrExpired, another
// owner's lease ErrNotHeld, both as a *LeaseError.
func (c *Coordinator) Renew(ctx context.Context, r Resource, owner string, opts ...AcquireOption) (Lease, error) {
	cl, err := c.startCall(r, owner, opts)
	if err != nil {
		return Lease{}, err
	}
	defer cl.done()
	start := time.Now()
	l, err := c.store.Renew(ctx, cl.req)
	c.m.observe(opRenew, start, err)
	if err != nil {
		if errors.Is(err, ErrExpired) || errors.Is(err, ErrNotHeld) {
			c.forget(holdKey{r, owner}, err)
		}
		return Lease{}, err
	}
	l.ttl, l.sent = cl.req.TTL, start
	return l, nil
}

// Release drops one hold of owner's lease on r; at zero the lease is
// deleted. The returned Lease's Count is the holds left. Releasing a free
// resource or another owner's lease gives ErrNotHeld (a *LeaseError) and
// changes nothing.
func (c *Coordinator) Release(ctx context.Context, r Resource, owner string) (Lease, error) {
	cl, err := c.startCall(r, owner, nil)
	if err != nil {
		return Lease{}, err
	}
	defer cl.done()
	return c.release(ctx, cl.req)
}

func (c *Coordinator) release(ctx context.Context, req Request) (Lease, error) {
	k := holdKey{req.Resource, req.Owner}
	start := time.Now()
	var (
		l      Lease
		err    error
		handed = true // without a queue in the store, a local waiter goes first
	)
	if qn := c.hub.qn; qn != nil && c.hub.handsOver(req.Resource) {
		// a deleted lease goes to the waiters here if it is their turn
		l, handed, err = qn.ReleaseHandOff(ctx, req, c.id)
	} else {
		l, err = c.store.Release(ctx, req)
	}
	c.m.observe(opRelease, start, err)
	switch {
	case err == nil && l.Count == 0:
		c.forget(k)
		c.hub.released(req.Resource, req.Owner, handed) // hand over to a waiter here at once
	case err == nil:
		c.track(k, -1)
	case errors.Is(err, ErrNotHeld):
		c.forget(k, err)
	}
	return l, err
}

// Inspect reports the lease on r, or ErrNotHeld when r is free.
func (c *Coordinator) Inspect(ctx context.Context, r Resource) (Lease, error) {
	if err := r.Validate(); err != nil {
		return Lease{}, err
	}
	done, err := c.begin()
	if err != nil {
		return Lease{}, err
	}
	defer done()
	return c.store.Inspect(ctx, r)
}

// ReleaseAll releases every lease of owner, whatever its hold count and
// whichever coordinator took it, and returns how many it released.
func (c *Coordinator) ReleaseAll(ctx context.Context, owner string) (int, error) {
	if err := ValidateOwner(owner); err != nil {
		return 0, err
	}
	done, err := c.begin()
	if err != nil {
		return 0, err
	}
	defer done()
	n, err := c.store.ReleaseAll(ctx, owner, c.requestID())
	if err == nil {
		c.mu.Lock()
		var stopped []holdKey
		for k := range c.holds {
			if k.owner == owner {
				stopped = append(stopped, k)
			}
		}
		c.mu.Unlock()
		for _, k := range stopped {
			c.forget(k)
		}
	}
	return n, err
}

// Close shuts the coordinator down: it ends waits, cancels the context of
// the functions running under Hold (cause ErrClosed) and waits for the
// calls in flight, Holds included (until ctx ends), stops every
// keep-alive, then releases every lease taken through c (all its holds). Later calls return ErrClosed; a second Close returns
// nil. The error joins the releases that failed; a lease that had already
// expired or been taken over is not an error. ctx bounds the releases.
func (c *Coordinator) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closing) // ends waits and cancels the work of running Holds
	c.mu.Unlock()
	c.hub.close()

	var errs []error
	waited := make(chan struct{})
	go func() { c.inflight.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("coordinator: close: calls still in flight: %w", context.Cause(ctx)))
	}
	c.mu.Lock()
	keepers := make([]*keeper, 0, len(c.keepers))
	for _, k := range c.keepers {
		keepers = append(keepers, k)
	}
	c.mu.Unlock()
	for _, k := range keepers {
		c.endKeeper(k)
	}
	c.bg.Wait()

	c.mu.Lock()
	keys := make([]holdKey, 0, len(c.holds))
	for k := range c.holds {
		keys = append(keys, k)
	}
	c.holds = make(map[holdKey]int)
	c.mu.Unlock()

	c.m.heldDelta(-float64(len(keys)))
	released := 0
	for _, k := range keys {
		req := Request{Resource: k.r, Owner: k.owner, RequestID: c.requestID(), All: true}
		_, err := c.store.Release(ctx, req)
		switch {
		case err == nil:
			released++
		case !errors.Is(err, ErrNotHeld):
			errs = append(errs, err)
		}
	}
	c.cfg.log.Info().Int("released", released).Int("errors", len(errs)).Msg("coordinator closed")
	return errors.Join(errs...)
}

// Held returns the hold count c believes owner has on r (the holds taken
// through c and not yet released).
func (c *Coordinator) Held(r Resource, owner string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds[holdKey{r, owner}]
}

// track adds delta to the holds of k; when none are left it stops k's
// keep-alive.
func (c *Coordinator) track(k holdKey, delta int) {
	c.mu.Lock()
	old := c.holds[k]
	n := old + delta
	if n > 0 {
		c.holds[k] = n
	} else {
		delete(c.holds, k)
	}
	c.mu.Unlock()
	switch {
	case old == 0 && n > 0:
		c.m.heldDelta(1)
	case old > 0 && n <= 0:
		c.m.heldDelta(-1)
	}
	if n <= 0 && delta < 0 {
		c.stopKeeping(k)
	}
}

// forget drops every hold of k and stops its keep-alive. A lost reason
// (the store said the lease is gone) is reported to the keep-alive as a
// loss; without one the lease was released on purpose.
func (c *Coordinator) forget(k holdKey, lost ...error) {
	c.mu.Lock()
	_, had := c.holds[k]
	delete(c.holds, k)
	kp := c.keepers[k]
	c.mu.Unlock()
	if had {
		c.m.heldDelta(-1)
	}
	switch {
	case kp == nil:
	case len(lost) > 0:
		kp.lose(lost[0])
	default:
		c.endKeeper(kp)
	}
}
