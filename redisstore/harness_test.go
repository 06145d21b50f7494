package redisstore_test

import (
	"testing"

	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// The conformance suites of coordinator/storetest, through the one
// harness of redisstore (internal/redisharness, which the cluster tests
// run on a Cluster and a Sentinel group).

func TestConformanceMiniredis(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Mini{})
}

func TestConformanceRedis(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Client{Client: testredis.Start(t).Client(t)})
}

// TestConformanceOnePartition: the suites on a store of one partition,
// where every AcquireAll is one script (acquireall.lua).
func TestConformanceOnePartition(t *testing.T) {
	redisharness.RunAll(t, &redisharness.Client{Client: testredis.Start(t).Client(t),
		Options: []redisstore.Option{redisstore.WithPartitions(1)}})
}
