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

// ExampleCoordinator_Observe follows an election from another process:
// the leader at once (here the office is vacant), then every change.
func ExampleCoordinator_Observe() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := context.Background()
	observer := coordinator.New(redisstore.New(client))
	defer observer.Close(ctx)
	worker := coordinator.New(redisstore.New(client))
	defer worker.Close(ctx)

	octx, stop := context.WithCancel(ctx)
	defer stop()
	leaders, _ := observer.Observe(octx, "db-primary")
	fmt.Println("vacant:", (<-leaders).Vacant())

	_, _ = worker.Acquire(ctx, coordinator.Election("db-primary"), "node-2", coordinator.Meta("10.0.0.2:5432"))
	l := <-leaders
	fmt.Println(l.Candidate, "leads at", l.Value)
	_, _ = worker.Release(ctx, coordinator.Election("db-primary"), "node-2")
	fmt.Println("vacant:", (<-leaders).Vacant())
	// Output:
	// vacant: true
	// node-2 leads at 10.0.0.2:5432
	// vacant: true
}

// ExampleCoordinator_Watch prints the events of the leases of one type
// as they happen; a gap says that events may be missing.
func ExampleCoordinator_Watch() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := context.Background()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(ctx)

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events, _ := c.WatchType(wctx, "plan")
	_, _ = c.Acquire(ctx, coordinator.Plan("42"), "worker-1")
	_, _ = c.Acquire(ctx, coordinator.Plan("42"), "worker-1")
	_, _ = c.Release(ctx, coordinator.Plan("42"), "worker-1")
	_, _ = c.Release(ctx, coordinator.Plan("42"), "worker-1")
	for range 4 {
		ev := <-events
		if ev.Kind == coordinator.EventGap {
			fmt.Println("gap:", ev.Gap)
			continue
		}
		fmt.Println(ev.Kind, ev.Lease.Resource, ev.Lease.Owner, "count", ev.Lease.Count)
	}
	// Output:
	// acquired plan/42 worker-1 count 1
	// reentered plan/42 worker-1 count 2
	// decremented plan/42 worker-1 count 1
	// released plan/42 worker-1 count 0
}
