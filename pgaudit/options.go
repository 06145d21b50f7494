package pgaudit

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Defaults of the mirror options.
const (
	DefaultGroup           = "lockcoord-mirror"
	DefaultBatchSize       = 1000
	DefaultBlock           = time.Second
	DefaultClaimIdle       = 30 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 10 * time.Second
	DefaultApplyTimeout    = 30 * time.Second
	DefaultDrainTimeout    = 10 * time.Second
	DefaultTrimInterval    = time.Second
	DefaultCleanupInterval = time.Minute
	// MaxBatchSize bounds WithBatchSize.
	MaxBatchSize = 100_000
)

// MirrorOption configures a Mirror. An option given a value that breaks
// its rule makes every method of the Mirror return a
// *coordinator.ValidationError naming it.
type MirrorOption func(*config)

type config struct {
	group        string
	consumer     string
	batchSize    int
	block        time.Duration
	claimIdle    time.Duration
	retryMin     time.Duration
	retryMax     time.Duration
	applyTimeout time.Duration
	drainTimeout time.Duration
	trimEvery    time.Duration
	cleanupEvery time.Duration
	expireEvery  time.Duration
	log          zerolog.Logger
	registerer   prometheus.Registerer
	err          error

	// test hooks
	perPartition bool                // read each partition with its own command, as on Cluster
	afterCommit  func([]event) error // between COMMIT and XACK
}

func (c *config) fail(field, value, rule string) {
	if c.err == nil {
		c.err = &coordinator.ValidationError{Field: field, Value: value, Rule: rule}
	}
}

func newConfig(opts []MirrorOption) config {
	c := config{
		group:        DefaultGroup,
		batchSize:    DefaultBatchSize,
		block:        DefaultBlock,
		claimIdle:    DefaultClaimIdle,
		retryMin:     DefaultRetryMin,
		retryMax:     DefaultRetryMax,
		applyTimeout: DefaultApplyTimeout,
		drainTimeout: DefaultDrainTimeout,
		trimEvery:    DefaultTrimInterval,
		cleanupEvery: DefaultCleanupInterval,
		log:          zerolog.Nop(),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.consumer == "" {
		c.consumer = defaultConsumer()
	}
	return c
}

// defaultConsumer names a consumer after the host and process, with a
// random suffix so that two mirrors of one process never share a pending
// list.
func defaultConsumer() string {
	host, _ := os.Hostname()
	host = cmp.Or(host, "mirror")
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

func positive(c *config, field string, d time.Duration, set func(time.Duration)) {
	if d <= 0 {
		c.fail(field, d.String(), "must be positive")
		return
	}
	set(d)
}

// WithGroup sets the Redis consumer group the mirror reads the partition
// streams through (default "lockcoord-mirror"). Mirrors of one group share
// the work, each entry going to one of them; mirrors of two groups (two
// databases) each see every entry. The name must not be empty.
func WithGroup(name string) MirrorOption {
	return func(c *config) {
		if name == "" {
			c.fail("WithGroup", name, "must not be empty")
			return
		}
		c.group = name
	}
}

// WithConsumer sets the mirror's consumer name within its group (default
// "<host>-<pid>-<random>"). A mirror restarted with the same name applies
// its own pending entries at once instead of waiting for the claim idle
// time. Two running mirrors must never share a name. It must not be empty.
func WithConsumer(name string) MirrorOption {
	return func(c *config) {
		if name == "" {
			c.fail("WithConsumer", name, "must not be empty")
			return
		}
		c.consumer = name
	}
}

// WithBatchSize sets how many entries the mirror reads from each partition
// stream per read (default 1000, from 1 to 100,000). One read of all
// partitions is applied in one Postgres transaction.
func WithBatchSize(n int) MirrorOption {
	return func(c *config) {
		if n < 1 || n > MaxBatchSize {
			c.fail("WithBatchSize", fmt.Sprint(n), fmt.Sprintf("must be from 1 to %d", MaxBatchSize))
			return
		}
		c.batchSize = n
	}
}

// WithBlock sets how long one read waits for new entries when the streams
// are idle (XREADGROUP BLOCK; default 1 s; at least a millisecond). Run
// notices a cancelled context within about this time.
func WithBlock(d time.Duration) MirrorOption {
	return func(c *config) {
		if d < time.Millisecond {
			c.fail("WithBlock", d.String(), "must be at least 1ms")
			return
		}
		c.block = d
	}
}

// WithClaimIdle sets how long an entry must have been pending with another
// consumer (a mirror that died or hangs) before this mirror claims it with
// XAUTOCLAIM (default 30 s; positive). Keep it well above the time one
// batch takes to apply.
func WithClaimIdle(d time.Duration) MirrorOption {
	return func(c *config) { positive(c, "WithClaimIdle", d, func(d time.Duration) { c.claimIdle = d }) }
}

// WithRetryBackoff sets the first and the longest pause between retries of
// a failed Postgres transaction or Redis command (default 100 ms and 10 s;
// the pause doubles per failure). Both must be positive, min <= max.
func WithRetryBackoff(min, max time.Duration) MirrorOption {
	return func(c *config) {
		if min <= 0 || max < min {
			c.fail("WithRetryBackoff", min.String()+","+max.String(), "must have 0 < min <= max")
			return
		}
		c.retryMin, c.retryMax = min, max
	}
}

// WithApplyTimeout bounds one attempt to apply a batch in Postgres
// (default 30 s; positive): a connection that hangs is abandoned and the
// batch retried.
func WithApplyTimeout(d time.Duration) MirrorOption {
	return func(c *config) { positive(c, "WithApplyTimeout", d, func(d time.Duration) { c.applyTimeout = d }) }
}

// WithDrainTimeout sets how long Run may still spend applying and
// acknowledging the batch it holds once its context is cancelled (default
// 10 s; positive). Entries not acknowledged by then stay pending in Redis
// and are applied by the next mirror.
func WithDrainTimeout(d time.Duration) MirrorOption {
	return func(c *config) { positive(c, "WithDrainTimeout", d, func(d time.Duration) { c.drainTimeout = d }) }
}

// WithTrimInterval sets how often Run trims the entries every consumer
// group has acknowledged from the streams (XTRIM MINID; default 1 s).
// Zero trims after every batch; a negative value never trims, leaving the
// streams to their MAXLEN cap.
func WithTrimInterval(d time.Duration) MirrorOption {
	return func(c *config) { c.trimEvery = d }
}

// WithCleanupInterval sets how often Run runs Cleanup (default 1 min).
// Cleanup always runs when Run starts, unless d is negative, which
// switches it off; zero runs it at the start only.
func WithCleanupInterval(d time.Duration) MirrorOption {
	return func(c *config) { c.cleanupEvery = d }
}

// WithExpirySweep makes Run turn the expired holds of every partition
// into "expired" events (redisstore's Store.ExpireDue) about every d,
// checked after each read (so at most once per WithBlock), for
// deployments where no worker watches (a store with watchers sweeps its
// watched partitions itself). Default 0: never; zero or a negative value
// switches it off. The mirror's Redis user then needs what expire.lua
// runs: EVALSHA, EVAL, TIME, ZRANGE, ZREM, XADD, with write access to
// <prefix>:{*}:expiry (see docs/operations.md).
func WithExpirySweep(d time.Duration) MirrorOption {
	return func(c *config) { c.expireEvery = d }
}

// WithLogger sets the logger of the mirror, its cleanup and diagnostics
// (default: none).
func WithLogger(l zerolog.Logger) MirrorOption {
	return func(c *config) { c.log = l }
}

// WithMetrics registers the mirror's Prometheus collectors with r (default:
// none registered): lockcoord_mirror_events_applied_total{event},
// _events_duplicate_total, _events_malformed_total, _events_lost_total,
// _events_claimed_total, _events_trimmed_total, _leases_expired_total,
// _retries_total, _batch_size, _batch_duration_seconds and _lag_seconds.
// Several mirrors of one process may share r; they share the collectors.
func WithMetrics(r prometheus.Registerer) MirrorOption {
	return func(c *config) {
		if r == nil {
			c.fail("WithMetrics", "nil", "must not be nil")
			return
		}
		c.registerer = r
	}
}
