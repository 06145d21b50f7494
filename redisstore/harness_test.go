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

// TestConformanceAutoPipeline: the suites with WithAutoPipeline, every
// script call through the AutoPipeliner (not only concurrent ones), on
// miniredis and a real Redis (the Cluster's: cluster/conformance_test.go).
func TestConformanceAutoPipeline(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) {
		redisharness.RunAll(t, &redisharness.Mini{Options: []redisstore.Option{redisstore.PipelineAlwaysForTest()}})
	})
	t.Run("redis", func(t *testing.T) {
		redisharness.RunAll(t, &redisharness.Client{Client: testredis.Start(t).Client(t),
			Options: []redisstore.Option{redisstore.PipelineAlwaysForTest()}})
	})
}
