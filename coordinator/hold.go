package coordinator

import (
	"context"
	"errors"
	"time"
)

// releaseTimeout bounds the release at the end of Hold, which runs even
// when the caller's context has ended.
const releaseTimeout = 10 * time.Second

// Hold acquires r for owner (waiting as the Wait option says), keeps the
// lease alive while fn runs, and releases it when fn returns.
//
// fn's context is cancelled with cause ErrClosed when Close starts, and
// with cause ErrLeaseLost (a *LostError) as soon as the lease is known lost: fn must stop writing to the resource then,
// and should pass l.Token with every write so that the resource can reject
// a holder that was paused past its lease (fencing).
//
// Hold returns the acquisition's error, or fn's error joined with the
// *LostError when the lease was lost — also when the loss was only found
// by the final release — or with the release's error when that failed.
func (c *Coordinator) Hold(ctx context.Context, r Resource, owner string, fn func(ctx context.Context, l Lease) error, opts ...AcquireOption) error {
	if fn == nil {
		return invalid("fn", "nil", "must not be nil")
	}
	req, cc, err := c.request(r, owner, opts)
	if err != nil {
		return err
	}
	done, err := c.begin() // Close waits for the Hold to end
	if err != nil {
		return err
	}
	defer done()
	l, err := c.acquire(ctx, req, cc)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ka := c.KeepAlive(fctx, l)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ka.Done():
		case <-c.closing:
			cancel(ErrClosed)
			<-ka.Done()
		}
		if err := ka.Err(); errors.Is(err, ErrLeaseLost) {
			cancel(err)
		}
	}()

	ferr := fn(fctx, l)

	var lost error
	if ka.k != nil {
		lost = ka.k.lostErr()
	}
	ka.Stop()
	<-watched
	if lost == nil {
		if err := ka.Err(); errors.Is(err, ErrLeaseLost) {
			lost = err
		}
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	req.RequestID = c.requestID()
	_, rerr := c.release(rctx, req) // also while Close waits for this Hold
	switch {
	case lost != nil:
		return errors.Join(ferr, lost)
	case errors.Is(rerr, ErrNotHeld):
		// the lease ended between the last renewal and the release
		return errors.Join(ferr, &LostError{Resource: r, Owner: owner, Token: l.Token, Reason: rerr})
	case rerr != nil:
		return errors.Join(ferr, rerr)
	}
	return ferr
}
