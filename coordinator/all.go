package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// AcquireAll takes every claim for owner, all or nothing, and returns the
// leases in the order of claims. Each claim is taken as Acquire would
// take it alone in its Mode (re-entries and upgrades included); the
// Permits option caps every shared claim without a cap of its own
// (Claim.Permits), TTL and Meta apply to every claim. On a
// conflict it returns the *ConflictError of a busy resource and holds
// nothing.
//
// With Wait it waits for the busy resource the last attempt met, holding
// nothing meanwhile, and then tries the whole set again: two owners asking
// for {a, b} and {b, a} at once both finish, never deadlocked. An upgrade
// conflict is returned at once.
//
// The store takes the claims that fall in one partition in one atomic
// step, and several partitions one after the other in a fixed order,
// giving back what it took when a later one is refused (see
// docs/reference/concurrency.md for the cost of each case).
//
// claims must name 1 to MaxClaims distinct resources in valid modes, and
// Shared is not an option here (each claim has its mode): anything else is
// ErrInvalid.
func (c *Coordinator) AcquireAll(ctx context.Context, owner string, claims []Claim, opts ...AcquireOption) ([]Lease, error) {
	cl, err := c.startAll(owner, claims, opts)
	if err != nil {
		return nil, err
	}
	defer cl.done()
	return c.acquireAll(ctx, cl.reqs, cl.cc)
}

// HoldAll takes every claim as AcquireAll does (waiting as the Wait
// option says), keeps every lease alive while fn runs, and releases them
// all when fn returns.
//
// fn's context is cancelled with cause ErrClosed when Close starts, and
// with cause ErrLeaseLost (the *LostError of the lease) as soon as any of
// the leases is known lost: fn must stop writing to every resource then.
//
// HoldAll returns the acquisition's error, or fn's error joined with the
// *LostError of each lease that was lost and the error of each release
// that failed.
func (c *Coordinator) HoldAll(ctx context.Context, owner string, claims []Claim, fn func(ctx context.Context, leases []Lease) error, opts ...AcquireOption) error {
	if fn == nil {
		return invalid("fn", "nil", "must not be nil")
	}
	cl, err := c.startAll(owner, claims, opts)
	if err != nil {
		return err
	}
	defer cl.done() // Close waits for the HoldAll to end
	ls, err := c.acquireAll(ctx, cl.reqs, cl.cc)
	if err != nil {
		return err
	}
	lost, ferr := c.runKept(ctx, ls, func(ctx context.Context) error { return fn(ctx, ls) })
	if err := c.endHolds(ctx, cl.reqs, ls, lost); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// Holders lists every lease on r, one per owner, sorted by ExpiresAt then
// Owner: the exclusive holder, or every shared holder. A free resource
// gives ErrNotHeld.
func (c *Coordinator) Holders(ctx context.Context, r Resource) ([]Lease, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	done, err := c.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	return c.store.Holders(ctx, r)
}

// allCall is an AcquireAll or HoldAll in flight: its requests (one per
// claim, one request ID), its options, and done, which ends it.
type allCall struct {
	reqs []Request
	cc   callConfig
	done func()
}

// startAll is the prologue of AcquireAll and HoldAll: it validates the
// arguments (no I/O for bad input), builds the requests and registers the
// call in flight.
func (c *Coordinator) startAll(owner string, claims []Claim, opts []AcquireOption) (allCall, error) {
	reqs, cc, err := c.allRequests(owner, claims, opts)
	if err != nil {
		return allCall{}, err
	}
	done, err := c.begin()
	if err != nil {
		return allCall{}, err
	}
	return allCall{reqs: reqs, cc: cc, done: done}, nil
}

// allRequests validates an AcquireAll's arguments and returns its requests.
func (c *Coordinator) allRequests(owner string, claims []Claim, opts []AcquireOption) ([]Request, callConfig, error) {
	if err := ValidateOwner(owner); err != nil {
		return nil, callConfig{}, err
	}
	if len(claims) == 0 || len(claims) > MaxClaims {
		return nil, callConfig{}, invalid("claims", strconv.Itoa(len(claims))+" claims",
			"must be 1 to "+strconv.Itoa(MaxClaims))
	}
	var cc callConfig
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	switch {
	case cc.err != nil:
		return nil, cc, cc.err
	case cc.shared:
		return nil, cc, invalid("Shared", "Shared()", "does not apply to AcquireAll: set the Mode of each Claim")
	}
	seen := make(map[Resource]struct{}, len(claims))
	reqs := make([]Request, len(claims))
	id := c.requestID()
	shared := false
	for i, cl := range claims {
		if err := cl.Resource.Validate(); err != nil {
			return nil, cc, err
		}
		switch {
		case !cl.Mode.valid():
			return nil, cc, invalid("claim mode", cl.Mode.String(), "must be ModeExclusive or ModeShared")
		case cl.Permits < 0 || cl.Permits > 0 && cl.Mode != ModeShared:
			return nil, cc, invalid("claim Permits", strconv.Itoa(cl.Permits), "must be 0, or at least 1 on a ModeShared claim")
		}
		if _, dup := seen[cl.Resource]; dup {
			return nil, cc, invalid("claims", cl.Resource.String(), "must name each resource once")
		}
		seen[cl.Resource] = struct{}{}
		ttl := cc.ttl
		if ttl == 0 {
			ttl = c.cfg.ttlFor(cl.Resource.Type)
		}
		reqs[i] = Request{Resource: cl.Resource, Owner: owner, TTL: ttl, RequestID: id, Mode: cl.Mode, Meta: cc.meta}
		if cl.Mode == ModeShared {
			reqs[i].Permits = cmp.Or(cl.Permits, cc.permits)
			shared = true
		}
	}
	if cc.permits > 0 && !shared {
		return nil, cc, invalid("Permits", strconv.Itoa(cc.permits), "applies to shared claims, and no claim is shared")
	}
	return reqs, cc, nil
}

// acquireAll takes the leases of reqs, waiting as cc says.
func (c *Coordinator) acquireAll(ctx context.Context, reqs []Request, cc callConfig) ([]Lease, error) {
	if cc.wait <= 0 {
		return c.acquireAllOnce(ctx, reqs, queuing{})
	}
	return c.acquireAllWaiting(ctx, reqs, cc.wait)
}

// acquireAllOnce sends one AcquireAll, queued as qp says, and records its
// outcome.
func (c *Coordinator) acquireAllOnce(ctx context.Context, reqs []Request, qp queuing) ([]Lease, error) {
	start := time.Now()
	var (
		ls  []Lease
		err error
	)
	if qp.waiter != "" {
		ls, err = c.hub.qn.AcquireAllQueued(ctx, reqs, qp.waiter, qp.at, qp.q)
	} else {
		ls, err = c.store.AcquireAll(ctx, reqs)
	}
	if err == nil && len(ls) != len(reqs) {
		err = fmt.Errorf("coordinator: the store answered an AcquireAll of %d claims with %d leases", len(reqs), len(ls))
	}
	c.m.observe(opAcquireAll, start, err)
	if err != nil {
		return nil, err
	}
	for i := range ls {
		ls[i].ttl, ls[i].sent = reqs[i].TTL, start
		c.acquired(ls[i])
	}
	return ls, nil
}
