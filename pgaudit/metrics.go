package pgaudit

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the mirror's Prometheus collectors. Without WithMetrics they
// exist but are registered nowhere.
type metrics struct {
	applied    *prometheus.CounterVec
	duplicates prometheus.Counter
	malformed  prometheus.Counter
	dead       prometheus.Counter
	lost       prometheus.Counter
	claimed    prometheus.Counter
	trimmed    prometheus.Counter
	expired    prometheus.Counter
	retries    prometheus.Counter
	batchSize  prometheus.Histogram
	batchTime  prometheus.Histogram
	lag        prometheus.Gauge
}

func newMetrics() *metrics {
	const ns, sub = "lockcoord", "mirror"
	return &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_applied_total", Help: "Stream events written to the ledger, by event."}, []string{"event"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_duplicate_total", Help: "Stream events delivered again that the ledger already held (replays after a crash or a claim)."}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_malformed_total", Help: "Stream entries that are not lease events; kept as dead letters, not applied."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_dead_lettered_total", Help: "Stream entries kept in lock_dead_letters instead of the ledger: malformed, refused by Postgres, or lost."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_lost_total", Help: "Pending stream entries deleted from the stream before they were applied (stream MAXLEN cap)."}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_claimed_total", Help: "Pending entries of idle consumers claimed with XAUTOCLAIM."}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_trimmed_total", Help: "Acknowledged entries trimmed from the streams."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "leases_expired_total", Help: "Stale rows moved to the ledger as expired by cleanup."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "retries_total", Help: "Failed attempts (Postgres or Redis) that were retried."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_size", Help: "Entries per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_duration_seconds", Help: "Time to apply and acknowledge one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "lag_seconds", Help: "Age of the oldest entry of the last batch when it was applied (0 when idle)."}),
	}
}

// register registers every collector with r, adopting the collector
// another mirror of the process registered already under the same name.
func (m *metrics) register(r prometheus.Registerer) error {
	return errors.Join(
		adopt(r, &m.applied), adopt(r, &m.duplicates), adopt(r, &m.malformed), adopt(r, &m.dead),
		adopt(r, &m.lost), adopt(r, &m.claimed), adopt(r, &m.trimmed),
		adopt(r, &m.expired), adopt(r, &m.retries), adopt(r, &m.batchSize),
		adopt(r, &m.batchTime), adopt(r, &m.lag))
}

func adopt[T prometheus.Collector](r prometheus.Registerer, c *T) error {
	err := r.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if got, ok := are.ExistingCollector.(T); ok {
			*c = got
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("pgaudit: register metrics: %w", err)
	}
	return nil
}
