package features_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cucumber/godog"

	"github.com/lockcoord/lockcoord/internal/testcluster"
)

// TestFeaturesOnCluster runs the scenarios on a real Redis Cluster of
// three masters (started for the test on loopback ports), so that every
// partition's keys, scripts and sharded release notifications live on the
// master of its slot. Redis's clock there is the machine's and cannot be
// moved: the scenarios that make time pass are skipped (they run on
// miniredis in TestFeatures), and expiries are checked to the time a step
// takes. Without redis-server it skips (fails under CI=true).
func TestFeaturesOnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := testcluster.StartCluster(ctx, testcluster.ClusterConfig{Replicas: -1})
	t.Cleanup(cl.Close)
	if err != nil {
		if errors.Is(err, testcluster.ErrNotInstalled) && !testcluster.Required() {
			t.Skipf("Redis Cluster not started: %v", err)
		}
		t.Fatalf("Redis Cluster did not start: %v", err)
	}
	newBackend := newClusterBackend(cl.Addrs())
	var ran, skipped atomic.Int64
	suite := godog.TestSuite{
		Name: "lockcoord-cluster",
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			initScenarioOn(sc, newBackend)
			sc.After(func(ctx context.Context, s *godog.Scenario, err error) (context.Context, error) {
				if needsClock(s) {
					skipped.Add(1)
				} else {
					ran.Add(1)
				}
				return ctx, nil
			})
		},
		Options: &godog.Options{
			Format:   "progress",
			Paths:    []string{"."},
			Strict:   true,
			TestingT: t,
		},
	}
	if suite.Run() != 0 {
		t.Fatal("godog: scenarios failed on the Cluster")
	}
	t.Logf("%d scenarios ran on the Cluster; %d that move Redis's clock were skipped", ran.Load(), skipped.Load())
}
