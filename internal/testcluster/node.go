package testcluster

import (
	"context"
	"errors"
	"os"
	"sync"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// Node is one redis-server (or Sentinel) process of a Cluster or a
// Sentinel group: a testredis.Server, which can be killed, frozen and
// started again.
type Node = testredis.Server

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
