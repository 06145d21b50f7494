package coordinator

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Default TTLs, from the specification.
const (
	DefaultPlanTTL    = 300 * time.Second // resource type "plan"
	DefaultProjectTTL = 600 * time.Second // resource type "project"
	DefaultTTL        = 60 * time.Second  // any other type
	// MinTTL is the shortest TTL accepted: Redis expiry has millisecond
	// resolution.
	MinTTL = time.Millisecond
	// MaxTTL is the longest TTL accepted: one year. Every bound of the
	// path a lease takes is far above it (the scripts' now + TTL in Lua
	// numbers, exact to 2^53 ms; PEXPIRE's 64-bit milliseconds; the
	// mirror's times, up to the year 9999; a Go time.Duration, 292
	// years), so no TTL accepted can overflow one of them, and a lease is
	// kept by its keep-alive, not by a TTL of years: a longer one
	// (2562047h, the largest Duration) is a mistake, not a lease.
	MaxTTL = 365 * 24 * time.Hour
)

// DefaultTTLFor returns the TTL a coordinator without TTL options gives
// a resource type: DefaultPlanTTL for "plan", DefaultProjectTTL for
// "project", DefaultElectionTTL for "election" (ElectionType), DefaultTTL
// for any other type.
func DefaultTTLFor(resourceType string) time.Duration {
	if d, ok := typeTTL(resourceType); ok {
		return d
	}
	return DefaultTTL
}

// typeTTL returns the default TTL of a resource type that has one of its
// own.
func typeTTL(resourceType string) (time.Duration, bool) {
	switch resourceType {
	case "plan":
		return DefaultPlanTTL, true
	case "project":
		return DefaultProjectTTL, true
	case ElectionType:
		return DefaultElectionTTL, true
	}
	return 0, false
}

// Option configures a Coordinator. An option given a value that breaks its
// rule makes every call of the Coordinator return a *ValidationError
// (ErrInvalid) naming it, so a misconfiguration cannot go unnoticed.
type Option func(*config)

// AcquireOption configures one Acquire, AcquireAll, Hold, HoldAll or
// Renew call. Renew uses only TTL.
type AcquireOption func(*callConfig)

type config struct {
	ttls          map[string]time.Duration
	defaultTTL    time.Duration
	renewInterval time.Duration // 0: TTL/3
	safetyMargin  time.Duration // 0: TTL/10
	registerer    prometheus.Registerer
	log           zerolog.Logger
	err           error
}

type callConfig struct {
	ttl     time.Duration
	wait    time.Duration
	shared  bool   // Shared
	permits int    // Permits; 0: none
	meta    string // Meta
	err     error
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithTTL sets the default TTL of one resource type. Defaults: plan 300 s,
// project 600 s. A ttl under one millisecond (zero, negative) is invalid.
func WithTTL(resourceType string, ttl time.Duration) Option {
	return func(c *config) {
		if err := ValidateType(resourceType); err != nil {
			c.fail(err)
			return
		}
		if err := checkTTL("WithTTL("+resourceType+")", ttl); err != nil {
			c.fail(err)
			return
		}
		c.ttls[resourceType] = ttl
	}
}

// WithDefaultTTL sets the TTL of resource types without their own (default
// 60 s). A ttl under one millisecond (zero, negative) is invalid.
func WithDefaultTTL(ttl time.Duration) Option {
	return func(c *config) {
		if err := checkTTL("WithDefaultTTL", ttl); err != nil {
			c.fail(err)
			return
		}
		c.defaultTTL = ttl
	}
}

// TTL sets the TTL of one call, overriding the coordinator's defaults.
// A d under one millisecond (zero, negative) makes the call fail with
// ErrInvalid.
func TTL(d time.Duration) AcquireOption {
	return func(c *callConfig) {
		if err := checkTTL("TTL", d); err != nil {
			c.err = err
			return
		}
		c.ttl = d
	}
}

// Wait makes Acquire (and Hold) wait up to d, and at most until the
// context ends, for the holder of a conflicting lease to release it. The
// wait listens for the store's release notifications (Redis pub/sub) and
// falls back to retries with a backoff bounded by the holder's remaining
// TTL, so a holder that died is noticed when its lease expires. Zero (the
// default) does not wait; a negative d is invalid. When the wait ends
// without the lease, the error matches ErrConflict and carries the last
// *ConflictError, joined with the context's error when the context ended
// it.
func Wait(d time.Duration) AcquireOption {
	return func(c *callConfig) {
		if d < 0 {
			c.err = invalid("Wait", d.String(), "must not be negative")
			return
		}
		c.wait = d
	}
}

// WithRenewInterval sets how often a keep-alive renews a lease (default
// zero: a third of the lease's TTL). An interval that leaves no time to
// retry before the safety margin (interval >= TTL - margin) is cut to a
// third of the TTL for that lease. A negative d is invalid.
func WithRenewInterval(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail(invalid("WithRenewInterval", d.String(), "must not be negative"))
			return
		}
		c.renewInterval = d
	}
}

// WithSafetyMargin sets how long before a lease's expiry a keep-alive that
// could not renew declares it lost (default zero: a tenth of the TTL). The
// margin covers the clock drift between the worker and Redis over one TTL
// and the time the holder needs to stop. A margin of the TTL or more is cut
// to a tenth of the TTL for that lease. A negative d is invalid.
func WithSafetyMargin(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail(invalid("WithSafetyMargin", d.String(), "must not be negative"))
			return
		}
		c.safetyMargin = d
	}
}

// WithMetrics registers the coordinator's Prometheus collectors with reg
// (default: none, nothing is registered). Coordinators sharing a registerer
// share the collectors. A nil reg is ignored.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *config) { c.registerer = reg }
}

// WithLogger sets the logger for lease loss, renewal retries and shutdown
// (default: zerolog.Nop(), no logging).
func WithLogger(l zerolog.Logger) Option {
	return func(c *config) { c.log = l }
}

// ValidateTTL checks the TTL of a lease: from MinTTL (1ms) to MaxTTL (one
// year). The error, a *ValidationError, names the field "TTL". Every TTL
// a Coordinator, a Store or lockctl takes is checked with it.
func ValidateTTL(d time.Duration) error { return checkTTL("TTL", d) }

func checkTTL(field string, d time.Duration) error {
	if d < MinTTL || d > MaxTTL {
		return invalid(field, d.String(), fmt.Sprintf("must be from %s to %s (one year)", MinTTL, MaxTTL))
	}
	return nil
}

func newConfig(opts []Option) config {
	c := config{
		ttls:       map[string]time.Duration{},
		defaultTTL: DefaultTTL,
		log:        zerolog.Nop(),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// renewTiming returns the renewal interval and safety margin for a TTL.
func (c *config) renewTiming(ttl time.Duration) (interval, margin time.Duration) {
	margin = c.safetyMargin
	if margin == 0 || margin >= ttl {
		margin = ttl / 10
	}
	interval = c.renewInterval
	if interval == 0 || interval >= ttl-margin {
		interval = ttl / 3
	}
	if interval <= 0 {
		interval = time.Millisecond
	}
	return interval, margin
}

// ttlFor returns the configured TTL of a resource type: its WithTTL, else
// the default of plan and project, else WithDefaultTTL.
func (c *config) ttlFor(resourceType string) time.Duration {
	if d, ok := c.ttls[resourceType]; ok {
		return d
	}
	if d, ok := typeTTL(resourceType); ok {
		return d
	}
	return c.defaultTTL
}
