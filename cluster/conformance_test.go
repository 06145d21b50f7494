package cluster_test

import (
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestConformanceCluster(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Client{Client: clusterClient(t)})
}

// TestConformanceClusterReplicaAck: every acquisition and renewal waits
// for the replica of its partition's master.
func TestConformanceClusterReplicaAck(t *testing.T) {
	storetest.Run(t, &redisharness.Client{Client: clusterClient(t),
		Options: []redisstore.Option{redisstore.WithReplicaAck(1, 10*time.Second)}})
}

// TestConformanceClusterAutoPipeline: the suites with WithAutoPipeline.
func TestConformanceClusterAutoPipeline(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Client{Client: clusterClient(t),
		Options: []redisstore.Option{redisstore.WithAutoPipeline()}})
}

func TestConformanceSentinel(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Client{Client: sentinelClient(t),
		Options: []redisstore.Option{redisstore.WithReplicaAck(1, 10*time.Second)}})
}
