package coordinator

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Mode is how an owner holds a resource.
type Mode int

const (
	// ModeExclusive is one owner at a time: the lease of Acquire without
	// options.
	ModeExclusive Mode = iota
	// ModeShared is any number of owners at once (at most the resource's
	// cap with Permits), none of them exclusive.
	ModeShared
)

// String returns "exclusive" or "shared" ("Mode(n)" for another value).
func (m Mode) String() string {
	switch m {
	case ModeExclusive:
		return "exclusive"
	case ModeShared:
		return "shared"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// valid reports whether m is one of the modes.
func (m Mode) valid() bool { return m == ModeExclusive || m == ModeShared }

// MaxMetaLen is the longest lease metadata (Meta), in bytes.
const MaxMetaLen = 1024

// MaxClaims is the most claims one AcquireAll or HoldAll takes.
const MaxClaims = 64

// Claim is one resource of an AcquireAll or HoldAll, and the mode to take
// it in.
type Claim struct {
	Resource Resource
	Mode     Mode
	// Permits, when not 0, caps this claim as the Permits option does
	// (Mode must be ModeShared): a claim's own cap takes precedence over
	// the option's, so that one AcquireAll can take an uncapped project
	// and a capped counter.
	Permits int
}

// Shared makes Acquire (and Hold) take the resource in shared mode: any
// number of owners may hold it at once, and it conflicts only with
// another owner's exclusive lease. An owner that holds the resource
// exclusively and asks for it shared re-enters its exclusive lease. In
// AcquireAll and HoldAll each Claim says its mode instead, and Shared is
// ErrInvalid there.
func Shared() AcquireOption {
	return func(c *callConfig) { c.shared = true }
}

// Permits makes Acquire (and Hold) take the resource in shared mode,
// capped at n owners at once: the acquisition that would be the
// (n+1)-th owner conflicts. The cap is recorded by the first holder and
// kept while any holder remains; a request with another cap meanwhile is
// ErrInvalid, naming the recorded one (a shared request without Permits
// joins under the recorded cap). In AcquireAll and HoldAll the cap applies
// to every shared claim. An n under 1 is ErrInvalid.
func Permits(n int) AcquireOption {
	return func(c *callConfig) {
		if n < 1 {
			c.err = invalid("Permits", strconv.Itoa(n), "must be at least 1")
			return
		}
		c.permits = n
	}
}

// Meta keeps s with the lease: a short note on who holds it and why,
// typically a host, a pid or a phase. It is reported in Lease.Meta, in
// ConflictError.Meta (so a refused worker learns what holds the resource)
// and by Inspect and Holders; a re-entry with a non-empty s replaces it.
// s must be at most MaxMetaLen bytes of printable UTF-8 (tabs allowed);
// anything else is ErrInvalid.
func Meta(s string) AcquireOption {
	return func(c *callConfig) {
		if err := ValidateMeta(s); err != nil {
			c.err = err
			return
		}
		c.meta = s
	}
}

// ValidateMeta checks lease metadata: at most MaxMetaLen bytes of valid,
// printable UTF-8, tabs allowed.
func ValidateMeta(s string) error {
	if len(s) > MaxMetaLen {
		return invalid("Meta", s, fmt.Sprintf("must be at most %d bytes, got %d", MaxMetaLen, len(s)))
	}
	if !utf8.ValidString(s) {
		return invalid("Meta", s, "must be valid UTF-8")
	}
	for _, c := range s {
		if c != '\t' && !unicode.IsPrint(c) {
			return invalid("Meta", s, fmt.Sprintf("must be printable (tabs allowed), found %U", c))
		}
	}
	return nil
}

// mode is the mode a call's options ask for.
func (c *callConfig) mode() Mode {
	if c.shared || c.permits > 0 {
		return ModeShared
	}
	return ModeExclusive
}
