package redisstore_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Example shows where a lease lives in Redis.
func Example() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	store := redisstore.New(client, redisstore.WithPrefix("myapp"), redisstore.WithPartitions(16))
	c := coordinator.New(store)
	defer c.Close(context.Background())

	r := coordinator.Plan("42")
	if _, err := c.Acquire(context.Background(), r, "worker-1"); err != nil {
		fmt.Println(err)
		return
	}
	key := store.Layout().LeaseKey(r)
	fmt.Println(key)
	fields, _ := client.HMGet(context.Background(), key, "owner", "count").Result()
	fmt.Println(fields...)
	// Output:
	// myapp:{3}:lock:plan:42
	// worker-1 1
}
