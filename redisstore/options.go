package redisstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

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
		if err := checkPrefix("WithPrefix", prefix); err != nil {
			s.fail(err)
			return
		}
		s.layout.prefix = prefix
	}
}

// WithPartitions sets the number of partitions resources are spread over
// (default 16, from 1 to 16384). Every store sharing a prefix must use the
// same number: the first store records it in Redis, and a store with
// another number refuses to run (ErrPartitionMismatch).
func WithPartitions(n int) Option {
	return func(s *Store) {
		if err := checkPartitions("WithPartitions", n); err != nil {
			s.fail(err)
			return
		}
		s.layout.partitions = n
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

// WithReplicaAck makes Acquire and Renew wait, once their script changed
// the lease, until n replicas of the master that ran it have the change:
// WAIT n timeout, sent on the script's own connection (on Cluster, to the
// master of the partition's slot). A failover to one of those replicas
// then keeps the lease, its fencing counter and its expiry;
// docs/reliability.md says what it does and does not protect.
//
// When fewer than n replicas acknowledge within timeout, or WAIT fails,
// the call returns an error wrapping ErrReplicaAck:
//   - Acquire first undoes what it did (a new lease is released, a
//     re-entry's hold dropped), so the caller holds nothing it does not
//     know of; should that release fail too, the hold lives until its TTL
//     and the error says so.
//   - Renew keeps the renewal on the master (an expiry cannot be taken
//     back, and a longer lease on the master is the safe side); a
//     keep-alive treats the error as a failed renewal and retries, so its
//     loss deadline runs from the last acknowledged renewal.
//
// Releases do not wait: a release a failover loses leaves a lease that
// expires by its TTL, which is safe.
//
// The cost is a round trip to the replicas on every acquisition and
// renewal, and a dedicated pooled connection per call. n = 0 switches it
// off (the default). n must not be negative, and with n > 0 timeout must
// be at least one millisecond (WAIT with 0 would block for ever). It needs
// a *redis.Client (standalone or Sentinel, redis.NewFailoverClient) or a
// *redis.ClusterClient.
func WithReplicaAck(n int, timeout time.Duration) Option {
	return func(s *Store) {
		switch {
		case n < 0:
			s.fail(&coordinator.ValidationError{Field: "WithReplicaAck", Value: fmt.Sprint(n), Rule: "replica count must not be negative"})
		case n > 0 && timeout < time.Millisecond:
			s.fail(&coordinator.ValidationError{Field: "WithReplicaAck", Value: timeout.String(), Rule: "timeout must be at least 1ms"})
		case n > 0 && !ackable(s.client):
			s.fail(&coordinator.ValidationError{Field: "WithReplicaAck", Value: fmt.Sprintf("%T", s.client),
				Rule: "needs a *redis.Client or *redis.ClusterClient"})
		default:
			s.ackReplicas, s.ackTimeout = n, timeout
		}
	}
}

// WithAutoPipeline sends the scripts of acquisitions, renewals and
// releases made while another is in flight through go-redis's
// AutoPipeliner (client.AutoPipeline(), shared with whoever else uses it,
// closed with the client): concurrent calls of one process then share
// round trips and syscalls, which at 64 goroutines multiplies the pairs
// per second (docs/operations.md). A call alone in flight goes straight
// to a pooled connection, as without the option, so one goroutine pays
// nothing for it. Everything else (pub/sub, watches, WAIT, MULTI/EXEC
// pipelines, configuration checks) keeps the client itself; with
// WithReplicaAck the scripts keep their own connections (WAIT must follow
// on the same one), and the option changes nothing.
//
// It needs a *redis.Client (standalone or Sentinel) or a
// *redis.ClusterClient. The AutoPipeliner is marked experimental by
// go-redis; lockcoord relies only on its blocking face keeping each
// command's reply with its caller, and its NOSCRIPT replies reaching the
// caller, which the conformance suites check on go-redis v9.23.0.
func WithAutoPipeline() Option {
	return func(s *Store) {
		var err error
		switch c := s.client.(type) {
		case *redis.Client:
			s.pipe, err = c.AutoPipeline()
		case *redis.ClusterClient:
			s.pipe, err = c.AutoPipeline()
		default:
			err = &coordinator.ValidationError{Field: "WithAutoPipeline", Value: fmt.Sprintf("%T", s.client),
				Rule: "needs a *redis.Client or *redis.ClusterClient"}
		}
		if err != nil {
			s.pipe = nil
			s.fail(fmt.Errorf("redisstore: WithAutoPipeline: %w", err))
		}
	}
}

func (s *Store) fail(err error) {
	if s.cfgErr == nil {
		s.cfgErr = err
	}
}

// WithEvictionRisk lets the store run on a Redis whose maxmemory-policy
// can evict leases (any policy but noeviction), or whose policy it cannot
// read (an ACL user without CONFIG GET and INFO). By default (without
// this option) the store reads the policy of every server it writes to
// before its first call and again after a data loss, and refuses every
// call with a *ConfigError (ErrUnsafeConfig) on such a Redis: an evicted
// lease is free to a second owner while its holder still works, and an
// evicted fencing counter, event stream or partition count loses what
// protects against that. Use it only for a Redis that cannot reach
// maxmemory, and watch lockcoord_redis_config_unsafe (WithMetrics) or
// lockctl doctor.
func WithEvictionRisk() Option {
	return func(s *Store) { s.evictionRisk = true }
}

// WithMetrics registers with reg the gauge lockcoord_redis_config_unsafe
// (label addr: each server the store writes to, each Cluster master):
// 1 when the server's configuration can lose leases or cannot be read
// (ServerConfig.Check), 0 when it is safe. It is read at each scrape
// (ServerConfigs, within 2 s), so it follows a CONFIG SET; a server that
// cannot be reached is left out of that scrape. Default: no metrics. A
// registerer that already holds the gauge (another store's) keeps that
// one; any other registration error makes every call of the store fail
// with a *coordinator.ValidationError naming WithMetrics.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Store) {
		if reg == nil {
			return
		}
		err := reg.Register(&configCollector{s: s})
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); err != nil && !ok {
			s.fail(&coordinator.ValidationError{Field: "WithMetrics", Value: fmt.Sprintf("%T", reg), Rule: err.Error()})
		}
	}
}
