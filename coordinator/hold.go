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
// with cause ErrLeaseLost (a *LostError) as soon as the lease is known
// lost: fn must stop writing to the resource then, and should pass l.Token
// with every write so that the resource can reject a holder that was
// paused past its lease (fencing).
//
// Hold returns the acquisition's error, or fn's error joined with the
// *LostError when the lease was lost — also when the loss was only found
// by the final release — or with the release's error when that failed.
func (c *Coordinator) Hold(ctx context.Context, r Resource, owner string, fn func(ctx context.Context, l Lease) error, opts ...AcquireOption) error {
	if fn == nil {
		return invalid("fn", "nil", "must not be nil")
	}
	cl, err := c.startCall(r, owner, opts)
	if err != nil {
		return err
	}
	defer cl.done() // Close waits for the Hold to end
	l, err := c.acquire(ctx, cl.req, cl.cc)
	if err != nil {
		return err
	}
	ferr, lost := c.runKept(ctx, l, fn)
	if err := c.endHold(ctx, cl.req, l, lost); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// runKept runs fn while a keep-alive renews l. fn's context is cancelled
// with cause ErrClosed when Close starts, and with the *LostError as soon
// as the lease is known lost. runKept returns fn's error and the loss, if
// the keep-alive found one.
func (c *Coordinator) runKept(ctx context.Context, l Lease, fn func(ctx context.Context, l Lease) error) (ferr, lost error) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ka := c.KeepAlive(fctx, l)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchKept(ka, cancel)
	}()

	ferr = fn(fctx, l)

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
	return ferr, lost
}

// watchKept cancels the context of a Hold's function when Close starts or
// ka finds the lease lost; it returns when ka has ended.
func (c *Coordinator) watchKept(ka *KeepAlive, cancel context.CancelCauseFunc) {
	select {
	case <-ka.Done():
	case <-c.closing:
		cancel(ErrClosed)
		<-ka.Done()
	}
	if err := ka.Err(); errors.Is(err, ErrLeaseLost) {
		cancel(err)
	}
}

// endHold releases the lease l of a Hold, also after ctx ended and while
// Close waits for the Hold, and returns what the caller must learn besides
// fn's error: the loss (also one that only the release found), or the
// release's failure.
func (c *Coordinator) endHold(ctx context.Context, req Request, l Lease, lost error) error {
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	req.RequestID = c.requestID()
	_, rerr := c.release(rctx, req)
	switch {
	case lost != nil:
		return lost
	case errors.Is(rerr, ErrNotHeld):
		// the lease ended between the last renewal and the release
		return &LostError{Resource: req.Resource, Owner: req.Owner, Token: l.Token, Reason: rerr}
	}
	return rerr
}
