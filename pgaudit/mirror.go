package pgaudit

import (
	"cmp"
	"context"
	"errors"
	"hash/crc32"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Mirror copies the audit outbox of a redisstore.Store, its partition
// event streams, into Postgres: every event into the lock_events ledger,
// and the state of every held lease into the locks table. Run consumes the
// streams until its context ends; Drain applies what is there and
// returns; Cleanup and Diagnose work on the mirror's tables. A Mirror is
// safe for concurrent use, and several mirrors (in several processes) may
// consume the same streams: each entry is applied once.
//
// The tables must exist (Migrate). The pool is the caller's; the Mirror
// never closes it.
type Mirror struct {
	pool    *pgxpool.Pool
	store   *redisstore.Store
	layout  redisstore.Layout // the store's
	rdb     redis.UniversalClient
	cfg     config
	metrics *metrics
	lockKey int32
	streams []string
	partOf  map[string]int
	err     error
}

// NewMirror returns a mirror of store's streams into the database of pool.
// See the options for the defaults. A nil pool or store, or an invalid
// option, makes every method return a *coordinator.ValidationError.
func NewMirror(pool *pgxpool.Pool, store *redisstore.Store, opts ...MirrorOption) *Mirror {
	m := &Mirror{pool: pool, store: store, cfg: newConfig(opts), metrics: newMetrics(), partOf: map[string]int{}}
	m.err = m.cfg.err
	switch {
	case pool == nil:
		m.err = &coordinator.ValidationError{Field: "pool", Value: "nil", Rule: "must not be nil"}
	case store == nil:
		m.err = &coordinator.ValidationError{Field: "store", Value: "nil", Rule: "must not be nil"}
	}
	if m.err != nil {
		return m
	}
	m.rdb, m.layout = store.Client(), store.Layout()
	m.cfg.perPartition = m.cfg.perPartition || store.Cluster()
	m.lockKey = int32(crc32.ChecksumIEEE([]byte(m.layout.Prefix())))
	for p := range m.layout.Partitions() {
		s := m.layout.StreamKey(p)
		m.streams = append(m.streams, s)
		m.partOf[s] = p
	}
	if m.cfg.registerer != nil {
		m.err = m.metrics.register(m.cfg.registerer)
	}
	return m
}

// Group returns the mirror's consumer group.
func (m *Mirror) Group() string { return m.cfg.group }

// Consumer returns the mirror's consumer name.
func (m *Mirror) Consumer() string { return m.cfg.consumer }

// killedError is an error of the afterCommit test hook: Run stops at once,
// as if the process had died between COMMIT and XACK.
type killedError struct{ err error }

func (k *killedError) Error() string { return "pgaudit: mirror stopped after commit: " + k.err.Error() }
func (k *killedError) Unwrap() error { return k.err }

// Run consumes the streams until ctx is done. It first checks the
// partition count, creates the consumer group on every stream (XGROUP
// CREATE ... MKSTREAM, from the first entry), runs Cleanup (see
// WithCleanupInterval) and applies the entries the consumer had pending.
// Then, in a loop: it reads new entries of all partitions (up to the batch
// size per partition, waiting up to the block time), applies them in one
// Postgres transaction, acknowledges them, claims the entries idle
// consumers left pending, trims acknowledged entries and runs the periodic
// cleanup.
//
// Failures of Postgres or Redis are logged and retried with backoff; the
// entries stay pending in Redis meanwhile, so nothing is lost, and the
// ledger's key on the entry id makes a replay a no-op. When ctx is done Run
// finishes the batch it holds and applies the entries it had read ahead,
// then returns nil: all within the drain timeout (WithDrainTimeout), which
// also cuts short an attempt under way; what is left stays pending.
// It returns an error only for a configuration that cannot work: an
// invalid option, or a partition count that disagrees with Redis
// (redisstore.ErrPartitionMismatch).
func (m *Mirror) Run(ctx context.Context) error {
	if m.err != nil {
		return m.err
	}
	log := m.cfg.log.With().Str("group", m.cfg.group).Str("consumer", m.cfg.consumer).Logger()
	var down outage
	for attempt := 0; ctx.Err() == nil; attempt++ {
		switch err := m.setup(ctx); {
		case err == nil:
			m.over(&down, "set up the consumer groups")
			log.Info().Int("partitions", len(m.streams)).Msg("pgaudit: mirror started")
			err = m.loop(ctx, log)
			log.Info().Msg("pgaudit: mirror stopped")
			return err
		case errors.Is(err, redisstore.ErrPartitionMismatch):
			return err
		default:
			down.failed(err)
			m.pause(ctx, attempt, err, "set up the consumer groups")
		}
	}
	return nil
}

// loop is Run's work once the groups exist. It returns when ctx is done,
// with an error only from the afterCommit test hook.
func (m *Mirror) loop(ctx context.Context, log zerolog.Logger) error {
	// Postgres and Redis calls run on work, which ends a drain timeout
	// after ctx: a batch in hand when ctx ends is finished, or given up
	// (left pending) when the drain timeout passes, whatever it waits on.
	work, stop := m.drainContext(ctx)
	defer stop()
	t := m.newTimers()
	if m.cfg.cleanupEvery >= 0 {
		m.cleanupLogged(ctx)
		t.cleanup = time.Now()
	}
	pendingDone := false
	var down outage
	for ctx.Err() == nil {
		var err error
		switch {
		case !pendingDone:
			var b *batch
			if b, err = m.read(ctx, "0", 0); err == nil {
				pendingDone = b.n == 0
				_, err = m.process(work, b)
			}
		case time.Since(t.claim) >= t.claimEvery:
			if _, err = m.claimAll(ctx, work); err == nil {
				t.claim = time.Now()
			}
		default:
			var b *batch
			if b, err = m.read(ctx, ">", m.cfg.block); err == nil {
				_, err = m.pump(ctx, work, b)
			}
		}
		var killed *killedError
		switch {
		case errors.As(err, &killed):
			return err
		case err != nil && ctx.Err() == nil && isNoGroup(err) && m.ensureGroups(ctx) == nil:
			// Redis lost the streams (restart without persistence, flush)
			log.Warn().Err(err).Msg("pgaudit: consumer groups were missing; created them again")
		case err != nil && ctx.Err() == nil:
			m.pause(ctx, down.attempts, err, "read the streams")
			down.failed(err)
		case err == nil:
			m.over(&down, "read the streams")
			m.housekeeping(ctx, t, log)
		}
	}
	m.finish(work, log)
	return nil
}

// finish applies, once Run's context is done, the entries the consumer
// still has pending (read ahead when the stop came), on work: until the
// drain timeout.
func (m *Mirror) finish(work context.Context, log zerolog.Logger) {
	var err error
	for err == nil {
		var b *batch
		if b, err = m.read(work, "0", 0); err == nil {
			if b.n == 0 {
				return
			}
			_, err = m.process(work, b)
		}
	}
	log.Warn().Err(err).Str("cause", stopReason(work)).
		Msg("pgaudit: stopping with entries not applied; they stay pending for the next mirror")
}

// timers are the times of Run's periodic work.
type timers struct {
	claim, trim, cleanup, expire time.Time
	claimEvery                   time.Duration
}

func (m *Mirror) newTimers() *timers {
	return &timers{claim: time.Now(), claimEvery: max(m.cfg.claimIdle/2, 10*time.Millisecond)}
}

// housekeeping trims the streams and runs the cleanup when their
// intervals have passed.
func (m *Mirror) housekeeping(ctx context.Context, t *timers, log zerolog.Logger) {
	if m.cfg.trimEvery >= 0 && time.Since(t.trim) >= m.cfg.trimEvery {
		if _, err := m.trim(ctx); err != nil {
			log.Warn().Err(err).Msg("pgaudit: trim failed")
		}
		t.trim = time.Now()
	}
	if m.cfg.cleanupEvery > 0 && time.Since(t.cleanup) >= m.cfg.cleanupEvery {
		m.cleanupLogged(ctx)
		t.cleanup = time.Now()
	}
	if m.cfg.expireEvery > 0 && time.Since(t.expire) >= m.cfg.expireEvery {
		m.expireDue(ctx, log)
		t.expire = time.Now()
	}
}

// expireDue runs the store's ExpireDue on every partition (see
// WithExpirySweep); a failure is logged, and the next sweep retries.
func (m *Mirror) expireDue(ctx context.Context, log zerolog.Logger) {
	for p := range m.layout.Partitions() {
		if _, err := m.store.ExpireDue(ctx, p); err != nil {
			log.Warn().Err(err).Int("partition", p).Msg("pgaudit: expiry sweep failed")
		}
	}
}

// drainContext returns a context that ends a drain timeout after ctx does
// (or when stop is called).
func (m *Mirror) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(m.cfg.drainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(errDrainTimeout)
		case <-work.Done():
		}
	}()
	return work, func() { cancel(context.Canceled) }
}

// gaveUpError is the error of a call persist stopped retrying because its
// context ended: the entries stay pending.
type gaveUpError struct {
	what, reason string
	err          error // the last failure
}

func (e *gaveUpError) Error() string {
	return "pgaudit: " + e.what + ": gave up when " + e.reason + ": " + e.err.Error()
}

func (e *gaveUpError) Unwrap() error { return e.err }

// errDrainTimeout ends the work of a stopped Run.
var errDrainTimeout = errors.New("the drain timeout passed")

// stopReason says why ctx ended, for a message.
func stopReason(ctx context.Context) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errDrainTimeout):
		return "the drain timeout passed"
	case cause == nil:
		return "a call failed"
	}
	return "stopped"
}

// Drain applies every entry available now, the consumer's own pending
// ones, new ones and those idle consumers left pending, trims what is
// acknowledged and returns the number of events it applied (entries kept
// as dead letters are not counted). It does not wait for new entries; it
// suits a one-shot job or a test. Failures are retried as in Run; when ctx
// is done it reads nothing more and gives the batch in hand until the
// drain timeout.
func (m *Mirror) Drain(ctx context.Context) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if err := m.setup(ctx); err != nil {
		return 0, err
	}
	work, stop := m.drainContext(ctx)
	defer stop()
	total := 0
	for {
		b, err := m.read(ctx, "0", 0)
		if err != nil {
			return total, err
		}
		if b.n == 0 {
			break
		}
		n, err := m.process(work, b)
		total += n
		if err != nil {
			return total, err
		}
	}
	b, err := m.read(ctx, ">", 0)
	if err != nil {
		return total, err
	}
	n, err := m.pump(ctx, work, b)
	total += n
	if err != nil {
		return total, err
	}
	n, err = m.claimAll(ctx, work)
	total += n
	if err != nil {
		return total, err
	}
	if m.cfg.trimEvery >= 0 {
		if _, err := m.trim(ctx); err != nil {
			return total, err
		}
	}
	return total, ctx.Err()
}

func (m *Mirror) setup(ctx context.Context) error {
	if err := m.store.CheckPartitions(ctx); err != nil {
		return err
	}
	return m.ensureGroups(ctx)
}

// claimAll claims and applies the entries idle consumers left pending in
// every partition, until ctx is done; it applies on work. It returns the
// number of events applied.
func (m *Mirror) claimAll(ctx, work context.Context) (int, error) {
	total := 0
	for p := range m.streams {
		for start := "0-0"; ctx.Err() == nil; {
			b, next, err := m.claim(work, p, start)
			if err != nil {
				return total, err
			}
			n, err := m.process(work, b)
			total += n
			if err != nil {
				return total, err
			}
			if next == "0-0" {
				break
			}
			start = next
		}
	}
	return total, nil
}

// fetched is the result of a read.
type fetched struct {
	b   *batch
	err error
}

// pump applies b and, while the streams have more (a backlog) and ctx
// lives, reads the next batch of new entries while it applies the current
// one (on work). It returns the number of events applied.
func (m *Mirror) pump(ctx, work context.Context, b *batch) (int, error) {
	if b.n == 0 {
		m.metrics.lag.Set(0)
	}
	total := 0
	for b.n > 0 {
		var next chan fetched
		if ctx.Err() == nil {
			next = make(chan fetched, 1)
			go func() {
				nb, err := m.read(ctx, ">", 0)
				next <- fetched{nb, err}
			}()
		}
		n, err := m.process(work, b)
		total += n
		if next == nil {
			return total, err
		}
		f := <-next
		if err == nil {
			err = f.err
		}
		if err != nil {
			// entries read and not applied stay pending: the next run of
			// this consumer, or a claim, applies them
			return total, err
		}
		b = f.b
	}
	return total, nil
}

// process applies b in Postgres (its events, and its dead letters), then
// acknowledges it in Redis. It returns the number of events applied.
func (m *Mirror) process(ctx context.Context, b *batch) (int, error) {
	if b.n == 0 {
		return 0, nil
	}
	start := time.Now()
	if err := m.persist(ctx, "read dead letters again in Redis", func(ctx context.Context) error {
		return m.readRaw(ctx, b.dead)
	}); err != nil {
		return 0, err
	}
	var res applyResult
	err := m.persist(ctx, "apply a batch in Postgres", func(ctx context.Context) error {
		var err error
		res, err = m.applyIsolating(ctx, work{events: b.events, dead: b.dead})
		return err
	})
	if err != nil {
		return 0, err
	}
	if h := m.cfg.afterCommit; h != nil {
		if err := h(b.events); err != nil {
			return 0, &killedError{err}
		}
	}
	if err := m.persist(ctx, "acknowledge a batch in Redis", func(ctx context.Context) error {
		return m.ack(ctx, b)
	}); err != nil {
		return 0, err
	}
	m.observe(b, res, time.Since(start))
	return res.applied, nil
}

// observe counts an applied batch in the metrics and the log.
func (m *Mirror) observe(b *batch, res applyResult, took time.Duration) {
	refused := make(map[deadKey]bool, len(res.dead))
	for _, d := range res.dead {
		refused[deadKey{d.partition, d.id}] = true
	}
	for i := range b.events {
		if e := &b.events[i]; !refused[deadKey{e.partition, e.id}] {
			m.metrics.applied.WithLabelValues(e.kind).Inc()
		}
	}
	dups := int64(res.applied) - res.inserted
	m.metrics.duplicates.Add(float64(dups))
	m.metrics.dead.Add(float64(len(res.dead)))
	m.metrics.batchSize.Observe(float64(b.n))
	m.metrics.batchTime.Observe(took.Seconds())
	if t, ok := streamTime(b.oldest); ok && b.oldest > 0 {
		m.metrics.lag.Set(max(0, time.Since(t).Seconds()))
	}
	m.cfg.log.Debug().Int("entries", b.n).Int64("inserted", res.inserted).Int64("duplicates", dups).
		Int("dead_letters", len(res.dead)).Dur("took", took).Msg("pgaudit: batch applied")
}

// persist runs f until it succeeds or ctx is done, pausing with backoff
// between attempts. Run and Drain give it a context that ends a drain
// timeout after their own.
func (m *Mirror) persist(ctx context.Context, what string, f func(context.Context) error) error {
	var last error // the last failure before ctx ended: the cause
	var down outage
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil {
			m.over(&down, what)
			return nil
		}
		if ctx.Err() != nil {
			return &gaveUpError{what: what, reason: stopReason(ctx), err: cmp.Or(last, err)}
		}
		last = err
		down.failed(err)
		m.pause(ctx, attempt, err, what)
	}
}

// pause logs a failed attempt and waits the backoff of attempt n (or until
// ctx is done).
func (m *Mirror) pause(ctx context.Context, n int, err error, what string) {
	d := m.cfg.retryMin << min(n, 30)
	if d > m.cfg.retryMax || d <= 0 {
		d = m.cfg.retryMax
	}
	m.metrics.retries.Inc()
	m.cfg.log.Warn().Err(err).Int("attempt", n+1).Dur("retry_in", d).Msg("pgaudit: could not " + what + "; retrying")
	sleep(ctx, d)
}

func (m *Mirror) cleanupLogged(ctx context.Context) {
	if _, err := m.Cleanup(ctx); err != nil && ctx.Err() == nil {
		m.cfg.log.Warn().Err(err).Msg("pgaudit: cleanup failed; will try again")
	}
}

func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOGROUP")
}
