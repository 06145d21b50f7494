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
// The storetest package holds the conformance suite every Store must pass.
type Store interface {
	// Acquire takes r for req.Owner with req.TTL, or re-enters the owner's
	// lease (count + 1, same token, expiry not shortened).
	Acquire(ctx context.Context, req Request) (Lease, error)
	// Renew sets the expiry of the owner's lease to now + req.TTL.
	Renew(ctx context.Context, req Request) (Lease, error)
	// Release drops one hold (every hold when req.All) of the owner's
	// lease; the returned Count is the holds left.
	Release(ctx context.Context, req Request) (Lease, error)
	// Inspect reports the lease on r, or ErrNotHeld when r is free.
	Inspect(ctx context.Context, r Resource) (Lease, error)
	// ReleaseAll releases every lease of owner, whatever its count, and
	// returns how many it released.
	ReleaseAll(ctx context.Context, owner, requestID string) (int, error)
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
	// Waiter is set by a coordinator whose store is a QueueNotifier, to
	// its id. On Acquire it says the acquisition waits: one refused queues
	// the waiter for the resource (keeping its place when queued), one
	// that succeeds leaves the queue, or goes to its end when StayQueued
	// (more waiters of the coordinator wait for the resource). On Release
	// it says waiters of the coordinator wait for the resource: a release
	// that deletes the lease hands it to them if the waiter is the first
	// queued, and notifies nobody else (see ReleaseHandOff).
	Waiter     string
	StayQueued bool
}

// Notifier is implemented by stores that announce releases, so that
// waiting acquirers need not poll. redisstore.Store implements it with
// Redis pub/sub.
type Notifier interface {
	// Releases subscribes to the release notifications of every
	// partition; the subscription is active when Releases returns.
	Releases(ctx context.Context) (Subscription, error)
}

// QueueNotifier is a Notifier that keeps, per resource, a queue of the
// coordinators waiting for it (Request.Waiter) and addresses each
// release's notification to the first of them, so that a release wakes
// one waiting process, not every process with a waiter.
type QueueNotifier interface {
	Notifier
	// ReleasesFor subscribes like Releases, but delivers only the releases
	// addressed to waiter or to nobody in particular.
	ReleasesFor(ctx context.Context, waiter string) (Subscription, error)
	// Unqueue removes waiter from r's queue: its last waiter gave up.
	Unqueue(ctx context.Context, r Resource, waiter string) error
	// ReleaseHandOff is Release, also reporting whether a release that
	// deleted the lease gave the resource's turn to the waiters of
	// req.Waiter (the releasing coordinator, first in the queue): nobody
	// else was notified, and the coordinator wakes its waiters itself.
	// Queued behind another process, the coordinator waits its turn.
	ReleaseHandOff(ctx context.Context, req Request) (Lease, bool, error)
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
