package features_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cucumber/godog"

	"github.com/lockcoord/lockcoord/internal/testcluster"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestFeaturesOnCluster runs the scenarios on a real Redis Cluster of
// three masters (started for the test on loopback ports), so that every
// partition's keys, scripts and sharded release notifications live on the
// master of its slot. Redis's clock there is the machine's and cannot be
// moved: "N seconds pass" moves the data back instead (every TTL, every
// lease's acquired_at and expires_at, the mirror's rows), and "expires N
// from now" allows for the time since the request. Without redis-server
// it skips (fails under CI=true).
func TestFeaturesOnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := testcluster.StartCluster(ctx, testcluster.ClusterConfig{Replicas: -1})
	t.Cleanup(cl.Close)
	if err != nil {
		if errors.Is(err, testredis.ErrNotInstalled) {
			testutil.Unavailable(t, "Redis Cluster not started: %v", err)
		}
		t.Fatalf("Redis Cluster did not start: %v", err)
	}
	newBackend := newClusterBackend(cl.Addrs())
	runSuite(t, "lockcoord-cluster", "progress", func(sc *godog.ScenarioContext) { initScenarioOn(sc, newBackend) })
}

// TestFeaturesOnRedis runs the scenarios on a real standalone Redis
// (started for the test on a loopback port), its clock handled as on the
// Cluster, with a store as shipped and with the configuration the README
// recommends for many goroutines (redisstore.WithAutoPipeline). Without
// redis-server it skips (fails under CI=true).
func TestFeaturesOnRedis(t *testing.T) {
	if _, err := testredis.LookPath("redis-server"); err != nil {
		testutil.Unavailable(t, "no redis-server: %v", err)
	}
	addr := testredis.Start(t).Addr
	for _, tc := range []struct {
		name string
		opts []redisstore.Option
	}{{"plain", nil}, {"autopipeline", []redisstore.Option{redisstore.WithAutoPipeline()}}} {
		t.Run(tc.name, func(t *testing.T) {
			newBackend := newServerBackend(addr)
			runSuite(t, "lockcoord-redis-"+tc.name, "progress", func(sc *godog.ScenarioContext) { initScenarioOn(sc, newBackend, tc.opts...) })
		})
	}
}
