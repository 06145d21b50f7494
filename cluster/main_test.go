package cluster_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/internal/testcluster"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// env is the Cluster and Sentinel group every test of the package shares.
var env testcluster.Env

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		env.Cluster, env.ClusterErr = testcluster.StartCluster(ctx, testcluster.ClusterConfig{})
	}()
	go func() {
		defer wg.Done()
		env.Sentinel, env.SentinelErr = testcluster.StartSentinel(ctx, testcluster.SentinelConfig{})
	}()
	wg.Wait()
	cancel()
	code := m.Run()
	env.Close()
	if code == 0 {
		if err := testutil.Leaked(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
