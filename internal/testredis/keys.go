package testredis

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DeletePrefix deletes every key of prefix ("<prefix>:*") through client:
// on every master of a Cluster, else on the one server.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
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
		return fmt.Errorf("testredis: delete %s:*: %w", prefix, err)
	}
	return nil
}
