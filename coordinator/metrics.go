package coordinator

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the collectors registered by WithMetrics; a nil *metrics
// records nothing.
type metrics struct {
	acquire, acquireAll *prometheus.HistogramVec
	renew, release      *prometheus.HistogramVec
	wait                *prometheus.HistogramVec
	conflicts           prometheus.Counter
	renewFailures       prometheus.Counter
	lost                prometheus.Counter
	held                prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	buckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	latency := func(op, by string, labels ...string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "lockcoord", Name: op + "_duration_seconds",
			Help:    "Latency of " + op + " calls to the store, by result (ok, conflict, not_held, expired, error)" + by + ".",
			Buckets: buckets,
		}, append([]string{"result"}, labels...)))
	}
	return &metrics{
		acquire:    latency("acquire", " and mode (exclusive, shared)", "mode"),
		acquireAll: latency("acquire_all", ""),
		renew:      latency("renew", ""),
		release:    latency("release", ""),
		wait: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "lockcoord", Name: "wait_duration_seconds",
			Help:    "Time acquirers spent waiting for a conflicting lease, by result (acquired, timeout, cancelled, upgrade, error).",
			Buckets: buckets,
		}, []string{"result"})),
		conflicts: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "lockcoord", Name: "conflicts_total",
			Help: "Acquire attempts refused because another owner held the resource.",
		})),
		renewFailures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "lockcoord", Name: "renew_failures_total",
			Help: "Keep-alive renewals that failed (and were retried or led to a loss).",
		})),
		lost: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "lockcoord", Name: "leases_lost_total",
			Help: "Leases a keep-alive declared lost.",
		})),
		held: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "lockcoord", Name: "leases_held",
			Help: "Leases currently held through the coordinators registered here.",
		})),
	}
}

// register registers c, or returns the collector already registered under
// the same description (coordinators sharing a registerer share them).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// result names the outcome of a call for the latency histograms.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrNotHeld):
		return "not_held"
	default:
		return "error"
	}
}

// Operations whose latency is observed by observe.
const (
	opRenew = iota
	opRelease
	opAcquireAll
)

func (m *metrics) observe(op int, start time.Time, err error) {
	if m == nil {
		return
	}
	h := [...]*prometheus.HistogramVec{opRenew: m.renew, opRelease: m.release, opAcquireAll: m.acquireAll}[op]
	h.WithLabelValues(result(err)).Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrConflict) {
		m.conflicts.Inc()
	}
}

// observeAcquire observes an Acquire of mode.
func (m *metrics) observeAcquire(start time.Time, mode Mode, err error) {
	if m == nil {
		return
	}
	m.acquire.WithLabelValues(result(err), mode.String()).Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrConflict) {
		m.conflicts.Inc()
	}
}

func (m *metrics) renewFailed() {
	if m != nil {
		m.renewFailures.Inc()
	}
}

func (m *metrics) leaseLost() {
	if m != nil {
		m.lost.Inc()
	}
}

func (m *metrics) waited(start time.Time, outcome string) {
	if m != nil {
		m.wait.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	}
}

func (m *metrics) heldDelta(d float64) {
	if m != nil && d != 0 {
		m.held.Add(d)
	}
}
