package testcluster

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// Node is one redis-server (or Sentinel) process of a Cluster or a
// Sentinel group: a testredis.Server, which can be killed, frozen and
// started again.
type Node = testredis.Server

// waitLimit bounds every wait of the package, whatever ctx allows (tests
// pass t.Context(), which has no deadline): a cluster that has not
// settled by then will not.
const waitLimit = 2 * time.Minute

// poll is testutil.Poll within waitLimit.
func poll(ctx context.Context, every time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	return testutil.Poll(ctx, every, check)
}

// startAll starts nodes concurrently.
func startAll(ctx context.Context, nodes []*Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() { errs[i] = nd.Start(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ownDir returns dir, or a new temporary folder (owned: Close removes it)
// when dir is "".
func ownDir(dir, pattern string) (_ string, owned bool, _ error) {
	if dir != "" {
		return dir, false, nil
	}
	d, err := os.MkdirTemp("", pattern)
	return d, err == nil, err
}
