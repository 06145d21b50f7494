package coordinator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Compare with errors.Is: the errors returned by this
// package and by stores wrap them.
var (
	// ErrInvalid reports an argument or option that breaks a documented
	// rule; no I/O was done. The error is a *ValidationError naming the
	// field and the rule.
	ErrInvalid = errors.New("coordinator: invalid argument")
	// ErrConflict reports a resource held by another owner. The error is a
	// *ConflictError naming the holder.
	ErrConflict = errors.New("coordinator: conflict")
	// ErrNotHeld reports a lease that the caller does not hold: the
	// resource is free (Release) or held by another owner (Renew, Release).
	ErrNotHeld = errors.New("coordinator: lease not held")
	// ErrExpired reports a Renew of a lease that no longer exists: it
	// expired or was released.
	ErrExpired = errors.New("coordinator: lease expired")
	// ErrClosed reports a call on a Coordinator after Close.
	ErrClosed = errors.New("coordinator: closed")
	// ErrUnsupported reports a call that the store cannot serve: it lacks
	// the capability (a mode, a cap, metadata). Nothing was applied. It
	// matches errors.ErrUnsupported too.
	ErrUnsupported error = unsupportedError{}
)

type unsupportedError struct{}

func (unsupportedError) Error() string { return "coordinator: not supported by the store" }

// Is makes ErrUnsupported match errors.ErrUnsupported.
func (unsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

// ValidationError is returned for bad input before any I/O is done.
// errors.Is(err, ErrInvalid) holds.
type ValidationError struct {
	Field string // the argument or option, e.g. "resource type"
	Rule  string // the rule it breaks
	Value string // the offending value, shortened for display
}

// Error implements error.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("coordinator: invalid %s %q: %s", e.Field, e.Value, e.Rule)
}

// Unwrap returns ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, value, rule string) error {
	if len(value) > 40 {
		value = value[:40] + "…"
	}
	return &ValidationError{Field: field, Rule: rule, Value: value}
}

// ConflictError reports that a resource is held by another owner, with the
// blocking holder's lease as Redis saw it in the same round trip.
// errors.Is(err, ErrConflict) holds; errors.As gives the holder.
//
// On a shared resource the blocking holder is the one whose hold expires
// first (a waiter looks again then), and Holders says how many owners
// hold it. A free resource can conflict too when waiters are queued for
// it ahead of the caller (the store's queue is fair): Holder is "" then,
// and Queued says how many.
type ConflictError struct {
	Resource  Resource
	Holder    string    // owner holding the lease; "" when r is free but waiters are queued ahead
	Token     uint64    // the holder's fencing token
	Count     int       // the holder's hold count
	ExpiresAt time.Time // Redis server time the holder's lease ends unless renewed
	// Remaining is the holder's time left when the store answered,
	// measured by the store's clock (0 when the store does not say).
	Remaining time.Duration
	Mode      Mode   // the blocking holder's mode
	Holders   int    // how many owners hold r (the caller included, on an upgrade)
	Permits   int    // the cap recorded on r; 0: none
	Meta      string // the blocking holder's metadata
	Queued    int    // waiters queued ahead of the caller; 0 when none or not known
	// Upgrade reports a shared holder's request for exclusive mode while
	// other owners hold r shared. It is never waited out: two holders
	// upgrading at once would each wait for the other.
	Upgrade bool
}

// Error implements error.
func (e *ConflictError) Error() string {
	var b strings.Builder
	b.WriteString("coordinator: conflict: ")
	until := e.ExpiresAt.UTC().Format(time.RFC3339Nano)
	switch {
	case e.Upgrade:
		others := e.Holders - 1
		verb := "hold"
		if others == 1 {
			verb = "holds"
		}
		fmt.Fprintf(&b, "%s cannot be upgraded to exclusive: %s %s it shared (first to expire %q, token %d, until %s); an upgrade does not wait",
			e.Resource, plural(others, "other owner"), verb, e.Holder, e.Token, until)
	case e.Holder == "":
		verb := "are"
		if e.Queued == 1 {
			verb = "is"
		}
		fmt.Fprintf(&b, "%s is free but %s %s queued ahead", e.Resource, plural(e.Queued, "waiter"), verb)
		return b.String()
	case e.Mode == ModeShared:
		fmt.Fprintf(&b, "%s is held shared by %s", e.Resource, plural(e.Holders, "owner"))
		if e.Permits > 0 {
			fmt.Fprintf(&b, " (cap %d)", e.Permits)
		}
		fmt.Fprintf(&b, ", first to expire %q (token %d, count %d) until %s", e.Holder, e.Token, e.Count, until)
	default:
		fmt.Fprintf(&b, "%s is held by %q (token %d, count %d) until %s", e.Resource, e.Holder, e.Token, e.Count, until)
	}
	if e.Meta != "" {
		fmt.Fprintf(&b, ", meta %q", e.Meta)
	}
	if e.Queued > 0 && !e.Upgrade {
		fmt.Fprintf(&b, "; %s queued ahead", plural(e.Queued, "waiter"))
	}
	return b.String()
}

// plural returns "1 noun" or "n nouns".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// LeaseError reports an operation on a lease that the caller does not hold
// (Err is ErrNotHeld) or that no longer exists (Err is ErrExpired).
type LeaseError struct {
	Op       string // "renew" or "release"
	Resource Resource
	Owner    string // the caller
	Holder   string // the current holder, "" when the resource is free
	// HolderToken is the token of the current lease when it is the
	// caller's own but not the one the call named (a later acquisition).
	HolderToken uint64
	Err         error // ErrNotHeld or ErrExpired
}

// Error implements error.
func (e *LeaseError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("%v: %s %s by %q: resource is free", e.Err, e.Op, e.Resource, e.Owner)
	}
	if e.HolderToken != 0 {
		return fmt.Sprintf("%v: %s %s by %q: the lease now held has token %d", e.Err, e.Op, e.Resource, e.Owner, e.HolderToken)
	}
	return fmt.Sprintf("%v: %s %s by %q: held by %q", e.Err, e.Op, e.Resource, e.Owner, e.Holder)
}

// Unwrap returns the sentinel (ErrNotHeld or ErrExpired).
func (e *LeaseError) Unwrap() error { return e.Err }

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

// errDeadline is the outcome of a renewal that did not answer before the
// keeper's deadline.
var errDeadline = errors.New("renewal deadline passed")

// errStopped is the outcome of a renewal cut short by the keeper's stop.
var errStopped = errors.New("keeper stopped")
