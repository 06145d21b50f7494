package pgaudit

import "github.com/prometheus/client_golang/prometheus"

// Test hooks, visible to the package's external tests only.

// WithAfterCommit calls f between a batch's COMMIT and its XACK with the
// number of events of the batch; an error from f stops Run at once, as if
// the process had died there.
func WithAfterCommit(f func(events int) error) MirrorOption {
	return func(c *config) { c.afterCommit = func(evs []event) error { return f(len(evs)) } }
}

// WithPerPartitionReads makes the mirror read each partition with its own
// command, as it does on Redis Cluster.
func WithPerPartitionReads() MirrorOption {
	return func(c *config) { c.perPartition = true }
}

// NextID and LowerID expose the stream id helpers.
var (
	NextID  = nextID
	LowerID = lowerID
)

// Metrics accessors.
func (m *Mirror) MetricsApplied(kind string) prometheus.Counter {
	return m.metrics.applied.WithLabelValues(kind)
}
func (m *Mirror) MetricsDuplicates() prometheus.Counter { return m.metrics.duplicates }
func (m *Mirror) MetricsExpired() prometheus.Counter    { return m.metrics.expired }
func (m *Mirror) MetricsMalformed() prometheus.Counter  { return m.metrics.malformed }
func (m *Mirror) MetricsLost() prometheus.Counter       { return m.metrics.lost }
func (m *Mirror) MetricsDeadLettered() prometheus.Counter {
	return m.metrics.dead
}
func (m *Mirror) MetricsClaimed() prometheus.Counter { return m.metrics.claimed }
func (m *Mirror) MetricsTrimmed() prometheus.Counter { return m.metrics.trimmed }
func (m *Mirror) MetricsRetries() prometheus.Counter { return m.metrics.retries }
func (m *Mirror) MetricsLag() prometheus.Gauge       { return m.metrics.lag }

// ParseStreamID exposes the stream id parser.
func ParseStreamID(id string) (uint64, uint64, error) { return parseStreamID(id) }

// UpsertLocksSQL is the mirror's upsert of the locks table.
const UpsertLocksSQL = upsertLocksSQL

// SafeText and EncodeFields expose the dead-letter encoders.
var (
	SafeText     = safeText
	EncodeFields = func(pairs ...[2]string) string {
		fields := make([]Field, len(pairs))
		for i, p := range pairs {
			fields[i] = Field{p[0], p[1]}
		}
		return encodeFields(fields)
	}
)
