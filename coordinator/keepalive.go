package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrLeaseLost reports a lease that its holder no longer has, or can no
// longer be sure to have: Redis said it was gone or held by another, or no
// renewal succeeded before its expiry minus the safety margin. The error is
// a *LostError carrying the reason.
var ErrLeaseLost = errors.New("coordinator: lease lost")

// ErrRenewTimeout is the reason of a loss declared because no renewal
// succeeded before the lease's expiry minus the safety margin (Redis
// unreachable or too slow).
var ErrRenewTimeout = errors.New("coordinator: no renewal succeeded before the safety margin")

// LostError reports a lost lease. errors.Is(err, ErrLeaseLost) holds, and
// so does errors.Is(err, reason) for its Reason (ErrExpired, ErrNotHeld,
// ErrRenewTimeout, ...).
type LostError struct {
	Resource Resource
	Owner    string
	Token    uint64
	Reason   error
}

// Error implements error.
func (e *LostError) Error() string {
	return fmt.Sprintf("coordinator: lease lost: %s of %q (token %d): %v", e.Resource, e.Owner, e.Token, e.Reason)
}

// Unwrap returns ErrLeaseLost and the reason.
func (e *LostError) Unwrap() []error { return []error{ErrLeaseLost, e.Reason} }

// keeper renews one (resource, owner) lease for every KeepAlive and Hold
// of a coordinator that shares it.
type keeper struct {
	c   *Coordinator
	key holdKey
	ttl time.Duration

	mu    sync.Mutex
	lease Lease
	refs  int
	err   error // *LostError once lost

	stop     chan struct{}
	stopOnce sync.Once
	ended    chan struct{} // closed when renewing stopped, for any reason
}

// KeepAlive renews a lease in the background until Stop, the end of the
// context given to Coordinator.KeepAlive, or the loss of the lease.
// Keep-alives of the same (resource, owner) on one coordinator share one
// renewal loop.
type KeepAlive struct {
	c        *Coordinator
	k        *keeper
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	mu       sync.Mutex
	err      error
}

// KeepAlive renews l every interval (WithRenewInterval, default a third of
// its TTL) until Stop, ctx's end, or loss. A failed renewal is retried with
// jittered backoff while time is left; the lease is declared lost when the
// store says it is gone or held by another, or when no renewal succeeded
// before the lease's expiry minus the safety margin (WithSafetyMargin,
// default a tenth of the TTL), measured on the worker's monotonic clock
// from when the last successful request was sent. So loss is signalled
// before another worker can take the lease, even when Redis is unreachable.
//
// l should come from Acquire or Renew of this coordinator: they record its
// TTL and when it was sent. For another lease (from Inspect, say) the TTL
// is the type's default and the first renewal is sent at once.
func (c *Coordinator) KeepAlive(ctx context.Context, l Lease) *KeepAlive {
	h := &KeepAlive{c: c, done: make(chan struct{}), stop: make(chan struct{})}
	if err := l.Resource.Validate(); err != nil {
		return h.fail(err)
	}
	if err := ValidateOwner(l.Owner); err != nil {
		return h.fail(err)
	}
	k, err := c.keeperFor(l)
	if err != nil {
		return h.fail(err)
	}
	h.k = k
	go func() {
		defer c.bg.Done() // added by keeperFor
		var err error
		select {
		case <-ctx.Done():
			err = context.Cause(ctx)
		case <-k.ended:
		case <-h.stop:
		}
		if lost := k.lostErr(); lost != nil {
			err = lost
		} else if err == nil && c.isClosing() {
			err = ErrClosed // ended by Close, not by Stop
		}
		c.unref(k)
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
		close(h.done)
	}()
	return h
}

func (h *KeepAlive) fail(err error) *KeepAlive {
	h.err = err
	close(h.done)
	return h
}

// Done is closed when the keep-alive ends for any reason.
func (h *KeepAlive) Done() <-chan struct{} { return h.done }

// Err returns nil while the keep-alive runs and after Stop (or the release
// of the lease); a *LostError (ErrLeaseLost wrapping the reason) after a
// loss; the context's cause when the context ended it; ErrClosed when Close
// ended it or it could not start after Close; ErrInvalid for a bad lease.
func (h *KeepAlive) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Lease returns the latest lease: the one given, or the last renewal.
func (h *KeepAlive) Lease() Lease {
	if h.k == nil {
		return Lease{}
	}
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	return h.k.lease
}

// Stop stops renewing (for this keep-alive: others sharing the lease keep
// it renewed) and keeps the lease. It returns once the keep-alive has
// ended. It is idempotent.
func (h *KeepAlive) Stop() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
}

// keeperFor returns the running keeper of l's (resource, owner) with one
// more reference, starting one if there is none.
func (c *Coordinator) keeperFor(l Lease) (*keeper, error) {
	if c.cfg.err != nil {
		return nil, c.cfg.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.bg.Add(1) // for the KeepAlive's watcher
	key := holdKey{l.Resource, l.Owner}
	ttl := l.ttl
	if ttl <= 0 {
		ttl = c.cfg.ttlFor(l.Resource.Type)
	}
	if k := c.keepers[key]; k != nil {
		k.mu.Lock()
		if l.Token == 0 || k.lease.Token >= l.Token {
			k.refs++
			k.ttl = max(k.ttl, ttl) // re-entered with a longer TTL: never renew it shorter
			k.mu.Unlock()
			return k, nil
		}
		k.mu.Unlock() // a later lease: a keeper of its own replaces the stale one
	}
	k := &keeper{c: c, key: key, ttl: ttl, lease: l, refs: 1,
		stop: make(chan struct{}), ended: make(chan struct{})}
	c.keepers[key] = k
	c.bg.Add(1)
	go k.run()
	return k, nil
}

// unref drops a reference; the last one stops the keeper.
func (c *Coordinator) unref(k *keeper) {
	k.mu.Lock()
	k.refs--
	last := k.refs <= 0
	k.mu.Unlock()
	if last {
		c.endKeeper(k)
	}
}

// endKeeper stops k and forgets it.
func (c *Coordinator) endKeeper(k *keeper) {
	c.mu.Lock()
	if c.keepers[k.key] == k {
		delete(c.keepers, k.key)
	}
	c.mu.Unlock()
	k.stopOnce.Do(func() { close(k.stop) })
}

// stopKeeping stops the keeper of key, if any (the lease was released).
func (c *Coordinator) stopKeeping(key holdKey) {
	c.mu.Lock()
	k := c.keepers[key]
	c.mu.Unlock()
	if k != nil {
		c.endKeeper(k)
	}
}

func (k *keeper) lostErr() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

type renewResult struct {
	lease Lease
	err   error
}

func (k *keeper) run() {
	defer k.c.bg.Done()
	defer close(k.ended)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	k.mu.Lock()
	l, ttl := k.lease, k.ttl
	k.mu.Unlock()
	interval, margin := k.c.cfg.renewTiming(ttl)
	lastOK, next := l.sent, l.sent.Add(interval)
	if lastOK.IsZero() {
		// unknown send time (a lease from Inspect): renew at once, and until
		// that succeeds trust the lease only as long as its expiry, read on
		// the worker's clock, says
		now := time.Now()
		left := min(max(time.Until(l.ExpiresAt), 0), ttl)
		lastOK, next = now.Add(left-ttl), now
	}
	for {
		if !k.sleep(time.Until(next)) {
			return
		}
		// the lease sent at lastOK lives ttl from then at least (Redis got
		// the request later); give up a margin before that
		deadline := lastOK.Add(ttl - margin)
		var lastErr error
		for attempt := 0; ; attempt++ {
			if !time.Now().Before(deadline) {
				k.lose(timeoutReason(lastErr))
				return
			}
			sent := time.Now()
			res, ok := k.renew(ctx, deadline)
			if !ok {
				return // stopped
			}
			if res.err == nil {
				ttl = res.lease.ttl // what the renewal set, even if k.ttl grew meanwhile
				interval, margin = k.c.cfg.renewTiming(ttl)
				lastOK, next = sent, sent.Add(interval)
				break
			}
			k.c.m.renewFailed()
			if errors.Is(res.err, ErrExpired) || errors.Is(res.err, ErrNotHeld) {
				k.lose(res.err)
				return
			}
			if errors.Is(res.err, errDeadline) {
				k.lose(timeoutReason(lastErr))
				return
			}
			lastErr = res.err
			k.c.cfg.log.Warn().Err(res.err).Str("resource", k.key.r.String()).Str("owner", k.key.owner).
				Uint64("token", l.Token).Int("attempt", attempt+1).Dur("time_left", time.Until(deadline)).
				Msg("lease renewal failed, retrying")
			back := min(interval/8<<min(attempt, 10), interval)
			back = back/2 + rand.N(back/2+1)
			if !k.sleep(min(back, time.Until(deadline))) {
				return
			}
		}
	}
}

var errDeadline = errors.New("renewal deadline passed")

// timeoutReason is the reason of a loss by timeout, with the last
// renewal error when there was one.
func timeoutReason(lastErr error) error {
	if lastErr == nil {
		return ErrRenewTimeout
	}
	return fmt.Errorf("%w (last error: %w)", ErrRenewTimeout, lastErr)
}

// renew sends one renewal and waits for it until deadline. ok is false
// when the keeper was stopped.
func (k *keeper) renew(ctx context.Context, deadline time.Time) (renewResult, bool) {
	k.mu.Lock()
	l, ttl := k.lease, k.ttl
	k.mu.Unlock()
	req := Request{Resource: k.key.r, Owner: k.key.owner, TTL: ttl, RequestID: k.c.requestID(), Token: l.Token}
	ch := make(chan renewResult, 1)
	sent := time.Now()
	rctx, rcancel := context.WithDeadline(ctx, deadline)
	defer rcancel()
	k.c.bg.Add(1)
	go func() { // the request may outlive a blackholed connection's deadline
		defer k.c.bg.Done()
		start := time.Now()
		nl, err := k.c.store.Renew(rctx, req)
		k.c.m.observe(opRenew, start, err)
		ch <- renewResult{nl, err}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.err == nil {
			res.lease.ttl, res.lease.sent = ttl, sent
			k.mu.Lock()
			k.lease = res.lease
			k.mu.Unlock()
		}
		return res, true
	case <-timer.C:
		return renewResult{err: errDeadline}, true
	case <-k.stop:
		return renewResult{}, false
	}
}

// sleep waits d; false when the keeper was stopped meanwhile.
func (k *keeper) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-k.stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-k.stop:
		return false
	}
}

func (k *keeper) lose(reason error) {
	k.mu.Lock()
	if k.err != nil {
		k.mu.Unlock()
		return
	}
	err := &LostError{Resource: k.key.r, Owner: k.key.owner, Token: k.lease.Token, Reason: reason}
	k.err = err
	k.mu.Unlock()
	k.c.m.leaseLost()
	k.c.cfg.log.Error().Err(reason).Str("resource", k.key.r.String()).Str("owner", k.key.owner).
		Uint64("token", err.Token).Msg("lease lost")
	// the lease is no longer ours to release: forget its holds (if it
	// still lives in Redis it expires within the safety margin)
	k.c.mu.Lock()
	_, had := k.c.holds[k.key]
	delete(k.c.holds, k.key)
	k.c.mu.Unlock()
	if had {
		k.c.m.heldDelta(-1)
	}
	k.c.endKeeper(k)
}

// Renewing returns the leases the coordinator's keep-alives are renewing,
// each with its latest renewal.
func (c *Coordinator) Renewing() []Lease {
	c.mu.Lock()
	keepers := make([]*keeper, 0, len(c.keepers))
	for _, k := range c.keepers {
		keepers = append(keepers, k)
	}
	c.mu.Unlock()
	out := make([]Lease, 0, len(keepers))
	for _, k := range keepers {
		k.mu.Lock()
		out = append(out, k.lease)
		k.mu.Unlock()
	}
	return out
}
