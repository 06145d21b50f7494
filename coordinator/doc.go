// Package coordinator hands out leases on named resources, so that among
// horizontally scaled workers exactly one works on a resource at a time.
//
// A Resource is a Type and an ID ("plan/42"). A Lease is held by an owner
// (a string the worker chooses) until it is released or its TTL runs out.
// The same owner acquiring again re-enters the lease (the hold count goes
// up, the fencing token stays); another owner gets a *ConflictError naming
// the holder. Every fresh acquisition carries a fencing token strictly
// greater than any issued before for the resource: pass it with every
// write so the resource can reject a holder that was paused past its lease.
//
// A resource can also be held shared (Shared): by any number of owners at
// once, each with a lease of its own, excluding only exclusive holders;
// Permits caps their number (a counted lease, a semaphore whose every
// permit is a lease). AcquireAll and HoldAll take several resources, in
// their modes, all or nothing, and wait for them without holding any:
// the project/plan hierarchy is a project shared and a plan exclusive in
// one HoldAll (ExampleCoordinator_HoldAll).
//
// The Coordinator does no I/O of its own: it drives a Store. The Redis
// store is in package redisstore; package storetest has the conformance
// suite every Store passes.
//
// Long work runs under Hold, which keeps the lease alive (renewing at a
// third of the TTL) and cancels the work's context with ErrLeaseLost as
// soon as the lease is known lost — before another worker can take it. The
// Wait option makes an acquisition wait for the holder's release, woken by
// Redis pub/sub. Close releases everything the coordinator took: call it on
// SIGTERM; Orphan stops the keep-alives and leaves the leases to their TTL.
// ForceRelease takes a stuck lease off its holder, naming the operator;
// the holder learns ErrLeaseForced.
//
// Errors wrap the sentinels ErrInvalid, ErrConflict, ErrNotHeld,
// ErrExpired, ErrClosed, ErrLeaseLost (ErrLeaseForced), ErrUnavailable and
// ErrUnsupported; compare with errors.Is and get
// details with errors.As (*ValidationError, *ConflictError, *LeaseError,
// *LostError).
package coordinator
