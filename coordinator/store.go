package coordinator

import (
	"context"
	"time"
)

// Store is the backend a Coordinator drives; redisstore.Store is the one
// this module ships. Every method must be atomic on the backend, take time
// from the backend's clock, and return the package's errors: a
// *ConflictError from Acquire, a *LeaseError (ErrNotHeld, ErrExpired) from
// Renew and Release, ErrNotHeld from Inspect of a free resource.
//
// The storetest package holds the conformance suite every Store must pass
// (storetest.Run). A Store may also offer the optional capabilities
// Notifier and WaitQueue, which a Coordinator finds by type assertion and
// does without; each has a conformance suite of its own
// (storetest.RunNotifier, storetest.RunWaitQueue).
type Store interface {
	// Acquire takes r for req.Owner with req.TTL in req.Mode, or re-enters
	// the owner's lease (count + 1, same token, expiry not shortened).
	//
	// Exclusive conflicts with any hold of another owner, shared only
	// with another owner's exclusive hold, or with req.Permits' cap (or
	// the recorded one) reached. The first holder of a free resource
	// records its mode and cap; a shared request naming another cap while
	// holders remain is a *ValidationError naming the recorded cap. An
	// exclusive holder asking shared re-enters and stays exclusive; the
	// sole shared holder asking exclusive is upgraded (count + 1, a new
	// token, acquired_at kept); a shared holder asking exclusive beside other holders gets
	// a *ConflictError with Upgrade set. Every fresh hold and every
	// upgrade gets a token above every token issued before for r.
	//
	// A store that does not support a mode, a cap or metadata refuses
	// the request with an error wrapping ErrUnsupported, applying
	// nothing.
	Acquire(ctx context.Context, req Request) (Lease, error)
	// Renew sets the expiry of the owner's lease to now + req.TTL.
	Renew(ctx context.Context, req Request) (Lease, error)
	// Release drops one hold (every hold when req.All) of the owner's
	// lease; the returned Count is the holds left.
	Release(ctx context.Context, req Request) (Lease, error)
	// Inspect reports the lease on r, or ErrNotHeld when r is free. On a
	// shared resource it reports the holder whose hold expires first.
	Inspect(ctx context.Context, r Resource) (Lease, error)
	// ReleaseAll releases every lease of owner, whatever its count, and
	// returns how many it released.
	ReleaseAll(ctx context.Context, owner, requestID string) (int, error)
	// AcquireAll takes every request (one owner, one request ID, distinct
	// resources, each as Acquire would take it alone) all or nothing and
	// returns their leases in the order of reqs. On a conflict it returns
	// the *ConflictError of a busy resource and holds nothing it took. A
	// repeat of its request ID is answered, not applied again.
	AcquireAll(ctx context.Context, reqs []Request) ([]Lease, error)
	// Holders lists every lease on r, one per owner, sorted by ExpiresAt
	// then Owner; ErrNotHeld when r is free.
	Holders(ctx context.Context, r Resource) ([]Lease, error)
}

// Request is one mutating call to a Store.
type Request struct {
	Resource Resource
	Owner    string
	TTL      time.Duration // Acquire, Renew: at least one millisecond
	// RequestID identifies the call: a Store applies a request ID once and
	// answers a repeat (a client retry after a lost reply) with the lease
	// as it stands, without applying it again.
	RequestID string
	All       bool // Release: drop every hold, not one
	// Token, when not zero, makes Renew apply only to the lease with this
	// fencing token: a keep-alive must not extend a later lease of the
	// same owner, or its holder would never learn that its own was lost.
	Token uint64
	// Mode is the mode Acquire asks for (see Store.Acquire).
	Mode Mode
	// Permits is the cap a shared Acquire asks for; 0 asks for none and
	// joins under the cap recorded on the resource, if any.
	Permits int
	// Meta is kept with the lease by Acquire, replacing the lease's
	// metadata on a re-entry when not empty.
	Meta string
}

// MaxRequestIDLen is the longest request ID, in bytes.
const MaxRequestIDLen = 128

// ValidateRequestID checks a request ID: 1-128 bytes of [A-Za-z0-9._:-],
// so that a store can keep it in a key name and in a space-separated list.
// The IDs a Coordinator makes (its id, a dash, a sequence number) follow
// the rule; a Store checks the IDs it is given with it.
func ValidateRequestID(id string) error {
	const rule = "must be 1-128 bytes of [A-Za-z0-9._:-]"
	if id == "" || len(id) > MaxRequestIDLen {
		return invalid("request id", id, rule)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return invalid("request id", id, rule)
		}
	}
	return nil
}

// Notifier is an optional capability of a Store: a store that announces
// releases, so that waiting acquirers need not poll. A Coordinator finds
// it by a type assertion on its store; redisstore.Store implements it with
// Redis pub/sub. storetest.RunNotifier is its conformance suite.
type Notifier interface {
	// Releases subscribes to the release notifications of every
	// resource; the subscription is active when Releases returns. A
	// release that deletes a lease is announced to every subscriber,
	// unless a WaitQueue addressed it to a queued waiter.
	Releases(ctx context.Context) (Subscription, error)
}

// WaitQueue is an optional capability of a Notifier: a store that keeps,
// per resource, a queue of the coordinators waiting for it and addresses
// each release's notification to the first of them, so that a release
// wakes one waiting process, not every process with a waiter. A
// Coordinator finds it by a type assertion on its store and names itself
// in the queue by a waiter id of its own. storetest.RunWaitQueue is its
// conformance suite.
type WaitQueue interface {
	Notifier
	// ReleasesFor subscribes like Releases, but delivers only the releases
	// addressed to waiter or to nobody in particular.
	ReleasesFor(ctx context.Context, waiter string) (Subscription, error)
	// AcquireQueued is Acquire by a waiting acquirer of the coordinator
	// waiter: one refused queues waiter for the resource (keeping its
	// place when queued), one that succeeds takes waiter out of the
	// queue, or moves it to the end when q.StayQueued. An upgrade
	// conflict (ConflictError.Upgrade), which is never waited out, does
	// not queue.
	AcquireQueued(ctx context.Context, req Request, waiter string, q Queueing) (Lease, error)
	// ReleaseHandOff is Release by a coordinator (waiter) whose own
	// waiters wait for the resource. It also reports whether a release
	// that deleted the lease gave the resource's turn to them, because
	// waiter was the first queued: nobody else was notified, and the
	// coordinator wakes its waiters itself. Queued behind another
	// process, the coordinator waits its turn (the first queued is
	// notified).
	ReleaseHandOff(ctx context.Context, req Request, waiter string) (Lease, bool, error)
	// Unqueue removes waiter from r's queue: its last waiter gave up.
	Unqueue(ctx context.Context, r Resource, waiter string) error
	// AcquireAllQueued is AcquireAll by a waiting acquirer of the
	// coordinator waiter, which waits for the resource at (the zero
	// Resource before it waits for any). A refusal queues waiter for the
	// refused resource (keeping its place when queued there), but for an
	// upgrade conflict; a success
	// takes waiter out of at's queue, or moves it to the end of it when
	// q.StayQueued, and leaves the queues of the other resources alone.
	AcquireAllQueued(ctx context.Context, reqs []Request, waiter string, at Resource, q Queueing) ([]Lease, error)
}

// Queueing says what a queued acquisition (WaitQueue.AcquireQueued) does
// with its waiter's place when it succeeds.
type Queueing struct {
	// StayQueued keeps the waiter queued, at the end of the queue: more
	// waiters of its coordinator wait for the resource. Without it the
	// waiter leaves the queue.
	StayQueued bool
}

// Subscription delivers released resources until Close.
type Subscription interface {
	// Released delivers the resource of each release; it is closed after
	// Close. A slow reader may miss notifications (waiters fall back to
	// retries).
	Released() <-chan Resource
	// Close ends the subscription and waits for its goroutines.
	Close() error
}
