package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

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

// renewResult is the outcome of one renewal: the renewed lease, or why
// there is none (the store's error, errDeadline, errStopped).
type renewResult struct {
	lease Lease
	err   error
}

// schedule is a keeper's renewal timing: when it renews next, and until
// when the lease is sure to live without another renewal.
type schedule struct {
	ttl, interval, margin time.Duration
	lastOK                time.Time // when the last successful request was sent
	next                  time.Time // when to renew next
}

// scheduleAfter is the schedule after a successful request with ttl sent
// at sent.
func (k *keeper) scheduleAfter(ttl time.Duration, sent time.Time) schedule {
	interval, margin := k.c.cfg.renewTiming(ttl)
	return schedule{ttl: ttl, interval: interval, margin: margin, lastOK: sent, next: sent.Add(interval)}
}

// deadline is when the keeper gives up: the lease sent at lastOK lives
// ttl from then at least (Redis got the request later); a margin before
// that.
func (s schedule) deadline() time.Time { return s.lastOK.Add(s.ttl - s.margin) }

// firstSchedule is the schedule of the lease the keeper started with.
func (k *keeper) firstSchedule() schedule {
	l, ttl := k.current()
	s := k.scheduleAfter(ttl, l.sent)
	if l.sent.IsZero() {
		// unknown send time (a lease from Inspect): renew at once, and until
		// that succeeds trust the lease only as long as its expiry, read on
		// the worker's clock, says
		now := time.Now()
		left := min(max(time.Until(l.ExpiresAt), 0), ttl)
		s.lastOK, s.next = now.Add(left-ttl), now
	}
	return s
}

// current returns the latest lease and the TTL to renew it with.
func (k *keeper) current() (Lease, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease, k.ttl
}

// run renews the lease on schedule until the keeper is stopped or the
// lease is lost.
func (k *keeper) run() {
	defer k.c.bg.Done()
	defer close(k.ended)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := k.firstSchedule()
	for k.sleep(time.Until(s.next)) {
		var renewed bool
		if s, renewed = k.renewOrLose(ctx, s); !renewed {
			return
		}
	}
}

// renewOrLose renews the lease, retrying a failed renewal with jittered
// backoff until s's deadline. It returns the next schedule, or false when
// the lease was lost or the keeper stopped.
func (k *keeper) renewOrLose(ctx context.Context, s schedule) (schedule, bool) {
	deadline := s.deadline()
	var lastErr error
	for attempt := 0; ; attempt++ {
		if !time.Now().Before(deadline) {
			k.lose(timeoutReason(lastErr))
			return s, false
		}
		res := k.renew(ctx, deadline)
		switch {
		case res.err == nil:
			// what the renewal set, even if k.ttl grew meanwhile
			return k.scheduleAfter(res.lease.ttl, res.lease.sent), true
		case errors.Is(res.err, errStopped):
			return s, false
		}
		k.c.m.renewFailed()
		if reason := lossReason(res.err, lastErr); reason != nil {
			k.lose(k.explainLoss(ctx, reason))
			return s, false
		}
		lastErr = res.err
		k.logRetry(res.err, attempt, deadline)
		if !k.sleep(min(retryDelay(s.interval, attempt), time.Until(deadline))) {
			return s, false
		}
	}
}

// lossReason returns why a failed renewal means the lease is lost, or nil
// when the renewal is worth retrying. lastErr is the previous failure.
func lossReason(err, lastErr error) error {
	switch {
	case errors.Is(err, ErrExpired) || errors.Is(err, ErrNotHeld):
		return err
	case errors.Is(err, errDeadline):
		return timeoutReason(lastErr)
	}
	return nil
}

// retryDelay is the jittered backoff before retry attempt+1 of a renewal
// due every interval.
func retryDelay(interval time.Duration, attempt int) time.Duration {
	back := min(interval/8<<min(attempt, 10), interval)
	return back/2 + rand.N(back/2+1)
}

func (k *keeper) logRetry(err error, attempt int, deadline time.Time) {
	l, _ := k.current()
	k.c.cfg.log.Warn().Err(err).Str("resource", k.key.r.String()).Str("owner", k.key.owner).
		Uint64("token", l.Token).Int("attempt", attempt+1).Dur("time_left", time.Until(deadline)).
		Msg("lease renewal failed, retrying")
}

// timeoutReason is the reason of a loss by timeout, with the last
// renewal error when there was one.
func timeoutReason(lastErr error) error {
	if lastErr == nil {
		return ErrRenewTimeout
	}
	return fmt.Errorf("%w (last error: %w)", ErrRenewTimeout, lastErr)
}

// renew sends one renewal and waits for it until deadline (errDeadline)
// or the keeper's stop (errStopped).
func (k *keeper) renew(ctx context.Context, deadline time.Time) renewResult {
	l, ttl := k.current()
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
		return res
	case <-timer.C:
		return renewResult{err: errDeadline}
	case <-k.stop:
		return renewResult{err: errStopped}
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
