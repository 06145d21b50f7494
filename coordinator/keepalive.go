package coordinator

import (
	"context"
	"sync"
)

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

// lost returns the *LostError of the lease when its keep-alive found it
// lost, else nil.
func (h *KeepAlive) lost() error {
	if h.k == nil {
		return nil
	}
	return h.k.lostErr()
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
	l, _ := h.k.current()
	return l
}

// Stop stops renewing (for this keep-alive: others sharing the lease keep
// it renewed) and keeps the lease. It returns once the keep-alive has
// ended. It is idempotent.
func (h *KeepAlive) Stop() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
}
