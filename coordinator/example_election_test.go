package coordinator_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// ExampleCoordinator_Lead elects a scheduler: Lead runs the function
// while worker-1 leads (passing term.Token with its writes fences a
// leader paused past its term), Proclaim changes the leader's value, and
// Observe follows every change, from the vacancy before the first term to
// the vacancy after the resignation.
func ExampleCoordinator_Lead() {
	mr, _ := miniredis.Run() // a real deployment points at its Redis
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := context.Background()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(ctx)

	octx, stop := context.WithCancel(ctx)
	defer stop()
	leaders, err := c.Observe(octx, "scheduler")
	if err != nil {
		fmt.Println("observe:", err)
		return
	}
	show := func(l coordinator.Leader) {
		if l.Vacant() {
			fmt.Println("observed: vacant")
			return
		}
		fmt.Printf("observed: %s leads at %s\n", l.Candidate, l.Value)
	}
	show(<-leaders)

	err = c.Lead(ctx, "scheduler", "worker-1", "10.0.0.1:8080", func(ctx context.Context, term *coordinator.Term) error {
		fmt.Println("leading, a term:", term.Token > 0)
		show(<-leaders)
		if err := term.Proclaim(ctx, "10.0.0.1:9090"); err != nil {
			return err
		}
		show(<-leaders)
		return nil // resigns
	})
	fmt.Println("lead:", err)
	show(<-leaders)
	// Output:
	// observed: vacant
	// leading, a term: true
	// observed: worker-1 leads at 10.0.0.1:8080
	// observed: worker-1 leads at 10.0.0.1:9090
	// lead: <nil>
	// observed: vacant
}
