package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// refreshOnFailure asks a Cluster client to read the slot map again after
// a request failed without a Redis reply (a refused or broken connection,
// a timeout): the master may be dead and its slots served by a promoted
// replica. go-redis itself reloads the map only on MOVED, ASK or READONLY
// replies and once a minute (ClusterStateReloadInterval), so without this
// a dead master's partitions stay unreachable for up to a minute after
// their replica took over. The reload runs in the background, at most
// one at a time, with a 200 ms pause between reloads.
func (s *Store) refreshOnFailure(err error) {
	if err == nil || !s.cluster {
		return
	}
	if _, ok := errors.AsType[redis.Error](err); ok {
		return // Redis answered
	}
	if errors.Is(err, context.Canceled) {
		return // the caller gave up, Redis may be fine
	}
	s.client.(*redis.ClusterClient).ReloadState(context.Background())
}
