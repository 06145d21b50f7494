package testcluster

import (
	"errors"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// Env holds what a package's TestMain started, for its tests.
type Env struct {
	Cluster     *Cluster
	ClusterErr  error
	Sentinel    *Sentinel
	SentinelErr error
}

// NeedCluster returns the cluster, or ends t: a skip when the Redis
// binaries are missing (a failure when testutil.Required), a failure when the
// cluster did not start.
func (e *Env) NeedCluster(t testing.TB) *Cluster {
	t.Helper()
	need(t, e.Cluster != nil, e.ClusterErr, "Redis Cluster")
	return e.Cluster
}

// NeedSentinel is NeedCluster for the Sentinel group.
func (e *Env) NeedSentinel(t testing.TB) *Sentinel {
	t.Helper()
	need(t, e.Sentinel != nil, e.SentinelErr, "Sentinel group")
	return e.Sentinel
}

func need(t testing.TB, ok bool, err error, what string) {
	t.Helper()
	switch {
	case ok:
	case errors.Is(err, testredis.ErrNotInstalled):
		testutil.Unavailable(t, "%s not started: %v", what, err)
	case err == nil:
		t.Fatalf("%s was not started (TestMain)", what)
	default:
		t.Fatalf("%s did not start: %v", what, err)
	}
}

// Close stops what was started.
func (e *Env) Close() {
	e.Cluster.Close()
	e.Sentinel.Close()
}
