package coordinator

import (
	"context"
	"errors"
	"sync"
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
	ls := []Lease{l}
	lost, ferr := c.runKept(ctx, ls, func(ctx context.Context) error { return fn(ctx, l) })
	if err := c.endHolds(ctx, []Request{cl.req}, ls, lost); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// runKept runs fn while keep-alives renew every lease of ls. fn's context
// is cancelled with cause ErrClosed when Close starts, and with the
// *LostError as soon as any lease is known lost. runKept returns, for
// each lease, its loss if its keep-alive found one, and fn's error.
func (c *Coordinator) runKept(ctx context.Context, ls []Lease, fn func(ctx context.Context) error) (lost []error, ferr error) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	kas := make([]*KeepAlive, len(ls))
	for i, l := range ls {
		kas[i] = c.KeepAlive(fctx, l)
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchKept(kas, cancel)
	}()

	ferr = fn(fctx)

	for _, ka := range kas {
		ka.Stop()
	}
	<-watched
	lost = make([]error, len(kas))
	for i, ka := range kas {
		lost[i] = ka.lost()
	}
	return lost, ferr
}

// watchKept cancels the context of a Hold's function when Close starts or
// a keep-alive of kas finds its lease lost; it returns when every one of
// kas has ended.
func (c *Coordinator) watchKept(kas []*KeepAlive, cancel context.CancelCauseFunc) {
	var wg sync.WaitGroup
	for _, ka := range kas {
		wg.Go(func() {
			<-ka.Done()
			if err := ka.lost(); err != nil {
				cancel(err)
			}
		})
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-c.closing:
		cancel(ErrClosed)
		<-ended
	}
}

// endHolds releases the leases ls of a Hold or HoldAll, the last taken
// first, also after ctx ended and while Close waits for the Hold, and
// returns what the caller must learn besides fn's error: each loss (also
// one that only the release found), and each release that failed.
func (c *Coordinator) endHolds(ctx context.Context, reqs []Request, ls []Lease, lost []error) error {
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	errs := make([]error, len(reqs))
	for i := len(reqs) - 1; i >= 0; i-- {
		req := reqs[i]
		req.RequestID = c.requestID()
		_, rerr := c.release(rctx, req)
		switch {
		case lost[i] != nil:
			errs[i] = lost[i]
		case errors.Is(rerr, ErrNotHeld):
			// the lease ended between the last renewal and the release
			errs[i] = &LostError{Resource: req.Resource, Owner: req.Owner, Token: ls[i].Token, Reason: rerr}
		default:
			errs[i] = rerr
		}
	}
	return errors.Join(errs...)
}
