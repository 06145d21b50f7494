package coordinator

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest resource ID or owner, in bytes.
const MaxNameLen = 512

// Resource names a thing to lock: a Type such as "plan" and an ID within it.
type Resource struct {
	Type string // lower case: [a-z][a-z0-9_-]{0,63}
	ID   string // 1-512 bytes of printable UTF-8, not only white space
}

// Plan returns the resource {plan id}.
func Plan(id string) Resource { return Resource{Type: "plan", ID: id} }

// Project returns the resource {project id}.
func Project(id string) Resource { return Resource{Type: "project", ID: id} }

// String returns "type/id", the form ParseResource reads.
func (r Resource) String() string { return r.Type + "/" + r.ID }

// ParseResource reads "type/id" ("plan/42"). The type ends at the first
// slash; the ID may contain further slashes. It returns an error matching
// ErrInvalid when s is not of that form or breaks a rule of Validate.
func ParseResource(s string) (Resource, error) {
	typ, id, ok := strings.Cut(s, "/")
	if !ok {
		return Resource{}, invalid("resource", s, `must be "type/id", e.g. "plan/42"`)
	}
	r := Resource{Type: typ, ID: id}
	if err := r.Validate(); err != nil {
		return Resource{}, err
	}
	return r, nil
}

// Validate checks the rules of the type and the ID and returns a
// *ValidationError (matching ErrInvalid) naming the first one broken.
func (r Resource) Validate() error {
	if err := ValidateType(r.Type); err != nil {
		return err
	}
	return validateName("resource id", r.ID)
}

// ValidateType checks a resource type: 1-64 characters, a lower-case ASCII
// letter followed by lower-case letters, digits, '_' or '-'.
func ValidateType(t string) error {
	const rule = "must match [a-z][a-z0-9_-]{0,63}"
	if t == "" || len(t) > 64 {
		return invalid("resource type", t, rule)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-'):
		default:
			return invalid("resource type", t, rule)
		}
	}
	return nil
}

// ValidateOwner checks an owner: 1-512 bytes of printable UTF-8, not
// only white space.
func ValidateOwner(owner string) error { return validateName("owner", owner) }

// ValidateOperator checks the operator named by a forced release
// (Coordinator.ForceRelease's by, lockctl release --force --by): the
// owner's rule, 1-512 bytes of printable UTF-8, not only white space.
func ValidateOperator(by string) error { return validateName("by", by) }

// validateName checks a resource ID, an owner or an operator: 1-512
// bytes of printable UTF-8, not only white space (" " would name nobody
// a person can tell apart in a table or a log).
func validateName(field, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return invalid(field, s, fmt.Sprintf("must be 1-%d bytes, got %d", MaxNameLen, len(s)))
	}
	if strings.TrimSpace(s) == "" {
		return invalid(field, s, "must not be only white space")
	}
	if !utf8.ValidString(s) {
		return invalid(field, s, "must be valid UTF-8")
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return invalid(field, s, fmt.Sprintf("must be printable, found %U", c))
		}
	}
	return nil
}
