package redisstore

import (
	"fmt"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Defaults of the options.
const (
	DefaultPrefix       = "lockcoord"
	DefaultPartitions   = 16
	DefaultStreamMaxLen = 100_000
	DefaultRetryWindow  = 30 * time.Second
	// MaxPartitions bounds WithPartitions.
	MaxPartitions = 16384
)

// Option configures a Store. An option given a value that breaks its rule
// makes every call of the Store return a *coordinator.ValidationError
// naming it.
type Option func(*Store)

// WithPrefix sets the key prefix (default "lockcoord"): 1-64 characters of
// [A-Za-z0-9_.:-], so it can never contain the braces of a hash tag.
func WithPrefix(prefix string) Option {
	return func(s *Store) {
		if err := validatePrefix(prefix); err != nil {
			s.fail(err)
			return
		}
		s.prefix = prefix
	}
}

// WithPartitions sets the number of partitions resources are spread over
// (default 16, from 1 to 16384). Every store sharing a prefix must use the
// same number: the first store records it in Redis, and a store with
// another number refuses to run (ErrPartitionMismatch).
func WithPartitions(n int) Option {
	return func(s *Store) {
		if n < 1 || n > MaxPartitions {
			s.fail(&coordinator.ValidationError{Field: "WithPartitions", Value: fmt.Sprint(n),
				Rule: fmt.Sprintf("must be from 1 to %d", MaxPartitions)})
			return
		}
		s.partitions = n
	}
}

// WithOutbox switches the audit outbox, the per-partition event stream the
// pgaudit mirror consumes, on or off (default on). Switch it off only for a
// deployment without the mirror.
func WithOutbox(on bool) Option {
	return func(s *Store) { s.outbox = on }
}

// WithStreamMaxLen caps each partition's event stream at about n entries
// (XADD MAXLEN ~ n; default 100,000), so Redis memory stays bounded when
// no mirror runs. n must be positive.
func WithStreamMaxLen(n int64) Option {
	return func(s *Store) {
		if n < 1 {
			s.fail(&coordinator.ValidationError{Field: "WithStreamMaxLen", Value: fmt.Sprint(n), Rule: "must be positive"})
			return
		}
		s.maxLen = n
	}
}

// WithRetryWindow sets how long Redis remembers the request id of a
// release that deleted a lease, so that a client retry of that release
// (after a lost reply) returns the first result instead of failing or
// releasing a later lease (default 30 s; at least one millisecond).
// Request ids of changes to a live lease are kept in the lease itself.
func WithRetryWindow(d time.Duration) Option {
	return func(s *Store) {
		if d < time.Millisecond {
			s.fail(&coordinator.ValidationError{Field: "WithRetryWindow", Value: d.String(), Rule: "must be at least 1ms"})
			return
		}
		s.retryWindow = d
	}
}

// WithNotifications switches the release notification on or off (default
// on): the release script publishes "type/id" on the partition's channel,
// which waiting acquirers listen to. Off, waiters fall back to polling.
func WithNotifications(on bool) Option {
	return func(s *Store) { s.notify = on }
}

func (s *Store) fail(err error) {
	if s.cfgErr == nil {
		s.cfgErr = err
	}
}

func validatePrefix(p string) error {
	bad := p == "" || len(p) > 64
	for i := 0; i < len(p) && !bad; i++ {
		c := p[i]
		bad = !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-')
	}
	if bad {
		return &coordinator.ValidationError{Field: "WithPrefix", Value: p, Rule: "must be 1-64 characters of [A-Za-z0-9_.:-]"}
	}
	return nil
}
