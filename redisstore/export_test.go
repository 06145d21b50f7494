package redisstore

import "time"

// SetHealthEveryForTest shortens the health check of idle subscription
// connections; the returned func restores it. Not for parallel tests.
func SetHealthEveryForTest(d time.Duration) (restore func()) {
	old := healthEvery
	healthEvery = d
	return func() { healthEvery = old }
}

// OutboxForTest reports whether s appends lease changes to the event
// streams.
func (s *Store) OutboxForTest() bool { return s.outbox }

// WatchFailuresForTest returns how many reads of the event streams for
// watchers failed.
func (s *Store) WatchFailuresForTest() int64 { return s.watches.failures.Load() }

// PipelineAlwaysForTest is WithAutoPipeline sending every script call
// through the AutoPipeliner, also one alone in flight.
func PipelineAlwaysForTest() Option {
	return func(s *Store) {
		WithAutoPipeline()(s)
		s.pipeAlone = true
	}
}

// PipelinedForTest reports whether s runs its scripts through an
// AutoPipeliner.
func (s *Store) PipelinedForTest() bool { return s.pipe != nil }

// SetExpireBatchForTest sets how many holds one expire.lua run takes;
// the returned func restores it. Not for parallel tests.
func SetExpireBatchForTest(n int64) (restore func()) {
	old := expireBatch
	expireBatch = n
	return func() { expireBatch = old }
}
