package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

	mu       sync.Mutex
	closed   bool
	holds    map[holdKey]int
	inflight sync.WaitGroup
}

type holdKey struct {
	r     Resource
	owner string
}

// New returns a Coordinator on store. Options are applied in order; see
// each for its default.
func New(store Store, opts ...Option) *Coordinator {
	c := &Coordinator{
		store: store,
		cfg:   newConfig(opts),
		holds: make(map[holdKey]int),
	}
	if store == nil {
		c.cfg.fail(invalid("store", "nil", "must not be nil"))
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	c.reqPrefix = hex.EncodeToString(b[:]) + "-"
	return c
}

// Store returns the store the coordinator drives.
func (c *Coordinator) Store() Store { return c.store }

// TTLFor returns the TTL a call without the TTL option uses for the
// resource type.
func (c *Coordinator) TTLFor(resourceType string) time.Duration { return c.cfg.ttlFor(resourceType) }

func (c *Coordinator) requestID() string {
	return c.reqPrefix + strconv.FormatUint(c.reqSeq.Add(1), 36)
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
	return c.inflight.Done, nil
}

func (c *Coordinator) request(r Resource, owner string, opts []AcquireOption) (Request, error) {
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	if err := ValidateOwner(owner); err != nil {
		return Request{}, err
	}
	cc := callConfig{ttl: c.cfg.ttlFor(r.Type)}
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	if cc.err != nil {
		return Request{}, cc.err
	}
	return Request{Resource: r, Owner: owner, TTL: cc.ttl, RequestID: c.requestID()}, nil
}

// Acquire takes r for owner. A free resource is taken with hold count 1
// and a new fencing token; the owner's own lease is re-entered (count + 1,
// same token, TTL refreshed, never shortened). A lease of another owner
// gives a *ConflictError (errors.Is(err, ErrConflict)) naming the holder.
func (c *Coordinator) Acquire(ctx context.Context, r Resource, owner string, opts ...AcquireOption) (Lease, error) {
	req, err := c.request(r, owner, opts)
	if err != nil {
		return Lease{}, err
	}
	done, err := c.begin()
	if err != nil {
		return Lease{}, err
	}
	defer done()
	l, err := c.store.Acquire(ctx, req)
	if err != nil {
		return Lease{}, err
	}
	c.track(holdKey{r, owner}, 1)
	return l, nil
}

// Renew sets the expiry of owner's lease on r to now + TTL (Redis time),
// leaving the hold count alone. A free resource gives ErrExpired, another
// owner's lease ErrNotHeld, both as a *LeaseError.
func (c *Coordinator) Renew(ctx context.Context, r Resource, owner string, opts ...AcquireOption) (Lease, error) {
	req, err := c.request(r, owner, opts)
	if err != nil {
		return Lease{}, err
	}
	done, err := c.begin()
	if err != nil {
		return Lease{}, err
	}
	defer done()
	l, err := c.store.Renew(ctx, req)
	if err != nil && (errors.Is(err, ErrExpired) || errors.Is(err, ErrNotHeld)) {
		c.forget(holdKey{r, owner})
	}
	return l, err
}

// Release drops one hold of owner's lease on r; at zero the lease is
// deleted. The returned Lease's Count is the holds left. Releasing a free
// resource or another owner's lease gives ErrNotHeld (a *LeaseError) and
// changes nothing.
func (c *Coordinator) Release(ctx context.Context, r Resource, owner string) (Lease, error) {
	req, err := c.request(r, owner, nil)
	if err != nil {
		return Lease{}, err
	}
	done, err := c.begin()
	if err != nil {
		return Lease{}, err
	}
	defer done()
	return c.release(ctx, req)
}

func (c *Coordinator) release(ctx context.Context, req Request) (Lease, error) {
	k := holdKey{req.Resource, req.Owner}
	l, err := c.store.Release(ctx, req)
	switch {
	case err == nil && l.Count == 0:
		c.forget(k)
	case err == nil:
		c.track(k, -1)
	case errors.Is(err, ErrNotHeld):
		c.forget(k)
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
		for k := range c.holds {
			if k.owner == owner {
				delete(c.holds, k)
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

// Close waits for the calls in flight, then releases every lease taken
// through c (all its holds). Later calls return ErrClosed; a second Close
// returns nil. The error joins the releases that failed; a lease that had
// already expired or been taken over is not an error.
func (c *Coordinator) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.inflight.Wait()

	c.mu.Lock()
	keys := make([]holdKey, 0, len(c.holds))
	for k := range c.holds {
		keys = append(keys, k)
	}
	c.holds = make(map[holdKey]int)
	c.mu.Unlock()

	var errs []error
	for _, k := range keys {
		req := Request{Resource: k.r, Owner: k.owner, RequestID: c.requestID(), All: true}
		if _, err := c.store.Release(ctx, req); err != nil && !errors.Is(err, ErrNotHeld) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Held returns the hold count c believes owner has on r (the holds taken
// through c and not yet released).
func (c *Coordinator) Held(r Resource, owner string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds[holdKey{r, owner}]
}

func (c *Coordinator) track(k holdKey, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.holds[k] + delta; n > 0 {
		c.holds[k] = n
	} else {
		delete(c.holds, k)
	}
}

func (c *Coordinator) forget(k holdKey) {
	c.mu.Lock()
	delete(c.holds, k)
	c.mu.Unlock()
}
