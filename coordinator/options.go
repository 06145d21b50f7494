package coordinator

import (
	"fmt"
	"time"
)

// Default TTLs, from the specification.
const (
	DefaultPlanTTL    = 300 * time.Second // resource type "plan"
	DefaultProjectTTL = 600 * time.Second // resource type "project"
	DefaultTTL        = 60 * time.Second  // any other type
	// MinTTL is the shortest TTL accepted: Redis expiry has millisecond
	// resolution.
	MinTTL = time.Millisecond
)

// Option configures a Coordinator. An option given a value that breaks its
// rule makes every call of the Coordinator return a *ValidationError
// (ErrInvalid) naming it, so a misconfiguration cannot go unnoticed.
type Option func(*config)

// AcquireOption configures one Acquire or Renew call.
type AcquireOption func(*callConfig)

type config struct {
	ttls       map[string]time.Duration
	defaultTTL time.Duration
	err        error
}

type callConfig struct {
	ttl time.Duration
	err error
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

func checkTTL(field string, d time.Duration) error {
	if d < MinTTL {
		return invalid(field, d.String(), fmt.Sprintf("must be at least %s", MinTTL))
	}
	return nil
}

func newConfig(opts []Option) config {
	c := config{
		ttls:       map[string]time.Duration{"plan": DefaultPlanTTL, "project": DefaultProjectTTL},
		defaultTTL: DefaultTTL,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// ttlFor returns the configured TTL of a resource type.
func (c *config) ttlFor(resourceType string) time.Duration {
	if d, ok := c.ttls[resourceType]; ok {
		return d
	}
	return c.defaultTTL
}
