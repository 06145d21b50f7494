// Package history records the operations of coordinator stores with their
// start and end times and outcomes, and checks them with porcupine against
// a sequential model of one resource's holders: an exclusive hold never
// beside another hold, shared holders never more than the resource's cap,
// fencing tokens that only go up across modes, hold counts and re-entry
// per owner, the upgrade of a sole shared holder, expiry by Redis time per
// holder, and outcomes that are unknown (timeouts, broken connections)
// treated as possibly applied at any later time.
package history

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Kind is the kind of an operation.
type Kind uint8

// The kinds of operations.
const (
	Acquire Kind = iota + 1
	Renew
	Release
	Inspect
	// Wipe is the loss of every key of Redis (a restart without
	// persistence, FLUSHALL) somewhere between its call and return times.
	Wipe
)

func (k Kind) String() string {
	switch k {
	case Acquire:
		return "acquire"
	case Renew:
		return "renew"
	case Release:
		return "release"
	case Inspect:
		return "inspect"
	case Wipe:
		return "wipe"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Status is the outcome of an operation.
type Status uint8

// The outcomes.
const (
	// OK: the store applied the operation and returned the lease.
	OK Status = iota + 1
	// Conflict: an acquire found the lease of another owner (Holder).
	Conflict
	// Free: the resource had no lease (renew: ErrExpired; release:
	// ErrNotHeld on a free resource; inspect: ErrNotHeld).
	Free
	// NotHeld: renew or release found the lease of another owner (Holder).
	NotHeld
	// OtherToken: renew found the owner's lease with another token
	// (Token).
	OtherToken
	// Unknown: no answer (timeout, broken connection): the operation may
	// have been applied, also later than its return.
	Unknown
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Conflict:
		return "conflict"
	case Free:
		return "free"
	case NotHeld:
		return "not-held"
	case OtherToken:
		return "other-token"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Input is what an operation asked, with its times in Unix milliseconds
// of the wall clock, which on one host is the clock Redis's TIME reads.
type Input struct {
	Kind  Kind
	Owner string
	TTL   int64  // acquire, renew: milliseconds
	Token uint64 // renew: the expected token, 0 for any
	All   bool   // release: every hold
	// Mode and Permits are what an acquire asks for: its mode, and the
	// cap of a shared acquire (0: none, or join under the recorded one).
	Mode    coordinator.Mode
	Permits int
	CallMs  int64
	RetMs   int64 // math.MaxInt64 for an unknown outcome
	// Seq numbers the operations of unknown outcome of a history (set by
	// Check).
	Seq int32
}

// Output is what an operation got.
type Output struct {
	Status     Status
	Holder     string // OK: the owner; Conflict, NotHeld: the other owner
	Count      int    // OK: the hold count (after a release, the holds left)
	Token      uint64
	AcquiredAt int64 // Unix ms, Redis time
	ExpiresAt  int64 // Unix ms, Redis time
	// Mode and Permits are the lease's (OK) or the blocking holder's
	// (Conflict) mode and the resource's recorded cap (0: none).
	Mode    coordinator.Mode
	Permits int
	// Holders is, for a conflict, how many owners hold the resource (0:
	// not said); Upgrade, a shared holder's refused upgrade.
	Holders int
	Upgrade bool
	// Queued is, for a conflict, how many waiters were queued ahead: a
	// fair store refuses a request that waiters are ahead of, whatever
	// the holds.
	Queued int
}

// Op is one recorded operation.
type Op struct {
	Resource coordinator.Resource
	Client   int
	Input    Input
	Output   Output
	Call     time.Time
	Return   time.Time // zero for an unknown outcome
	Err      error
}

func (o Op) String() string {
	in, out := o.Input, o.Output
	s := fmt.Sprintf("%s %s(%s", o.Resource, in.Kind, in.Owner)
	switch in.Kind {
	case Acquire:
		s += fmt.Sprintf(", ttl=%d", in.TTL)
		if in.Mode != coordinator.ModeExclusive {
			s += fmt.Sprintf(", %s, permits=%d", in.Mode, in.Permits)
		}
	case Renew:
		s += fmt.Sprintf(", ttl=%d, token=%d", in.TTL, in.Token)
	case Release:
		if in.All {
			s += ", all"
		}
	}
	s += ") -> " + out.Status.String()
	switch out.Status {
	case OK, Conflict:
		s += fmt.Sprintf(" %s count=%d token=%d expires=%d", out.Holder, out.Count, out.Token, out.ExpiresAt)
		if out.Mode != coordinator.ModeExclusive {
			s += fmt.Sprintf(" %s permits=%d", out.Mode, out.Permits)
		}
		if out.Holders > 1 || out.Upgrade {
			s += fmt.Sprintf(" holders=%d upgrade=%v", out.Holders, out.Upgrade)
		}
	case NotHeld:
		s += " " + out.Holder
	case OtherToken:
		s += fmt.Sprintf(" token=%d", out.Token)
	}
	return s
}

// never is the return time of an operation whose outcome is unknown.
const never = math.MaxInt64

// outcome turns a store call's result into an Output. applied is false
// when the call certainly did nothing to Redis (an invalid argument).
func outcome(kind Kind, l coordinator.Lease, err error, notSent func(error) bool) (out Output, sent bool) {
	if err == nil {
		return Output{Status: OK, Holder: l.Owner, Count: l.Count, Token: l.Token,
			AcquiredAt: l.AcquiredAt.UnixMilli(), ExpiresAt: l.ExpiresAt.UnixMilli(), Mode: l.Mode, Permits: l.Permits}, true
	}
	if errors.Is(err, coordinator.ErrInvalid) || (notSent != nil && notSent(err)) {
		return Output{}, false
	}
	if ce, ok := errors.AsType[*coordinator.ConflictError](err); ok {
		return Output{Status: Conflict, Holder: ce.Holder, Count: ce.Count, Token: ce.Token,
			ExpiresAt: ce.ExpiresAt.UnixMilli(), Mode: ce.Mode, Permits: ce.Permits, Holders: ce.Holders, Upgrade: ce.Upgrade, Queued: ce.Queued}, true
	}
	if le, ok := errors.AsType[*coordinator.LeaseError](err); ok {
		switch {
		case le.Holder == "":
			return Output{Status: Free}, true
		case le.HolderToken != 0:
			return Output{Status: OtherToken, Holder: le.Holder, Token: le.HolderToken}, true
		default:
			return Output{Status: NotHeld, Holder: le.Holder}, true
		}
	}
	if kind == Inspect && errors.Is(err, coordinator.ErrNotHeld) {
		return Output{Status: Free}, true
	}
	return Output{Status: Unknown}, true
}
