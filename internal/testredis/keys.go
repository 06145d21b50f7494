package testredis

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DeleteKeys deletes every key matching the SCAN pattern (a store's
// Layout().KeyPattern()) through client: on every master of a Cluster,
// else on the one server. It reports a failing scan; a deletion that
// fails is skipped.
func DeleteKeys(ctx context.Context, client redis.UniversalClient, pattern string) error {
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			// best effort: a test may have made some deletions fail
			// (a hook on its client); the keys then expire or stay in
			// the test's own prefix
			_ = c.Del(ctx, iter.Val()).Err()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
	} else {
		err = del(ctx, client)
	}
	if err != nil {
		return fmt.Errorf("testredis: delete %s: %w", pattern, err)
	}
	return nil
}
