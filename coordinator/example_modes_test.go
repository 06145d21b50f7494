package coordinator_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/redisstore"
)

// ExampleCoordinator_AcquireAll takes several resources all or nothing: a
// busy one refuses the whole set, and nothing is left held.
func ExampleCoordinator_AcquireAll() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(context.Background())
	ctx := context.Background()

	claims := []coordinator.Claim{
		{Resource: coordinator.Plan("1"), Mode: coordinator.ModeExclusive},
		{Resource: coordinator.Plan("2"), Mode: coordinator.ModeExclusive},
	}
	_, _ = c.Acquire(ctx, coordinator.Plan("2"), "worker-2")

	_, err := c.AcquireAll(ctx, "worker-1", claims)
	var conflict *coordinator.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("refused:", conflict.Resource, "is held by", conflict.Holder)
	}
	_, err = c.Inspect(ctx, coordinator.Plan("1"))
	fmt.Println("plan/1 left free:", errors.Is(err, coordinator.ErrNotHeld))

	_, _ = c.Release(ctx, coordinator.Plan("2"), "worker-2")
	leases, err := c.AcquireAll(ctx, "worker-1", claims)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range leases {
		fmt.Println(l.Resource, "held by", l.Owner, l.Mode)
	}
	// Output:
	// refused: plan/2 is held by worker-2
	// plan/1 left free: true
	// plan/1 held by worker-1 exclusive
	// plan/2 held by worker-1 exclusive
}

// ExampleCoordinator_HoldAll is the project/plan hierarchy. A plan
// transition holds its project shared and its plan exclusive in one
// HoldAll: transitions of a project's plans run at once, two transitions
// of one plan never do, and a project-wide job, which takes the project
// exclusive, excludes every transition (and waits for them with Wait).
func ExampleCoordinator_HoldAll() {
	// an in-memory store for the example; a deployment uses redisstore
	c := coordinator.New(storetest.NewMemStore())
	defer c.Close(context.Background())
	ctx := context.Background()
	project := coordinator.Project("apollo")

	transition := func(plan string) []coordinator.Claim {
		return []coordinator.Claim{
			{Resource: project, Mode: coordinator.ModeShared},
			{Resource: coordinator.Plan(plan), Mode: coordinator.ModeExclusive},
		}
	}
	err := c.HoldAll(ctx, "worker-1", transition("42"), func(ctx context.Context, leases []coordinator.Lease) error {
		fmt.Println("worker-1:", leases[0].Resource, leases[0].Mode, "+", leases[1].Resource, leases[1].Mode)

		// a transition of another plan of the project runs at once
		_ = c.HoldAll(ctx, "worker-2", transition("43"), func(ctx context.Context, _ []coordinator.Lease) error {
			holders, _ := c.Holders(ctx, project)
			fmt.Println("worker-2 in too:", len(holders), "holders of", project)
			return nil
		})

		// a second transition of plan 42 is refused
		var conflict *coordinator.ConflictError
		_, err := c.AcquireAll(ctx, "worker-3", transition("42"))
		if errors.As(err, &conflict) {
			fmt.Println("worker-3 refused:", conflict.Resource, "is held by", conflict.Holder)
		}

		// so is a project-wide job while a transition runs
		_, err = c.Acquire(ctx, project, "archiver")
		if errors.As(err, &conflict) {
			fmt.Println("archiver refused:", project, "is held", conflict.Mode, "by", conflict.Holders, "owner")
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := c.Acquire(ctx, project, "archiver")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("archiver holds", l.Resource, l.Mode)
	// Output:
	// worker-1: project/apollo shared + plan/42 exclusive
	// worker-2 in too: 2 holders of project/apollo
	// worker-3 refused: plan/42 is held by worker-1
	// archiver refused: project/apollo is held shared by 1 owner
	// archiver holds project/apollo exclusive
}

// ExamplePermits caps the plans of a project that run at once: each
// running plan holds one of the project's two permits, a counted lease
// with its own owner, token and expiry.
func ExamplePermits() {
	// an in-memory store for the example; a deployment uses redisstore
	c := coordinator.New(storetest.NewMemStore())
	defer c.Close(context.Background())
	ctx := context.Background()
	slots := coordinator.Resource{Type: "running", ID: "apollo"}

	for _, plan := range []string{"plan-1", "plan-2", "plan-3"} {
		l, err := c.Acquire(ctx, slots, plan, coordinator.Permits(2))
		var conflict *coordinator.ConflictError
		switch {
		case errors.As(err, &conflict):
			fmt.Printf("%s waits: %d of %d permits taken\n", plan, conflict.Holders, conflict.Permits)
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Printf("%s runs (a permit of %d)\n", plan, l.Permits)
		}
	}
	_, _ = c.Release(ctx, slots, "plan-1")
	if _, err := c.Acquire(ctx, slots, "plan-3", coordinator.Permits(2)); err == nil {
		fmt.Println("plan-3 runs once plan-1 is done")
	}
	// Output:
	// plan-1 runs (a permit of 2)
	// plan-2 runs (a permit of 2)
	// plan-3 waits: 2 of 2 permits taken
	// plan-3 runs once plan-1 is done
}
