package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Example shows the basic calls and the graceful shutdown of a worker:
// signal.NotifyContext ends the work on SIGTERM, and Close releases every
// lease the worker still holds.
func Example() {
	mr, _ := miniredis.Run() // a real deployment points at its Redis
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c := coordinator.New(redisstore.New(client), coordinator.WithTTL("report", 30*time.Second))
	defer c.Close(context.Background()) // on SIGTERM too: releases what is left

	lease, err := c.Acquire(ctx, coordinator.Plan("42"), "worker-1")
	if err != nil {
		fmt.Println("acquire:", err)
		return
	}
	fmt.Println(lease.Resource, "held by", lease.Owner, "count", lease.Count)

	lease, _ = c.Acquire(ctx, coordinator.Plan("42"), "worker-1") // re-entry
	fmt.Println("re-entered, count", lease.Count)

	_, err = c.Acquire(ctx, coordinator.Plan("42"), "worker-2")
	var conflict *coordinator.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("worker-2 refused: held by", conflict.Holder, "count", conflict.Count)
	}

	lease, _ = c.Release(ctx, coordinator.Plan("42"), "worker-1")
	fmt.Println("released once, holds left", lease.Count)
	lease, _ = c.Release(ctx, coordinator.Plan("42"), "worker-1")
	fmt.Println("released again, holds left", lease.Count)

	_, err = c.Inspect(ctx, coordinator.Plan("42"))
	fmt.Println("free:", errors.Is(err, coordinator.ErrNotHeld))
	// Output:
	// plan/42 held by worker-1 count 1
	// re-entered, count 2
	// worker-2 refused: held by worker-1 count 2
	// released once, holds left 1
	// released again, holds left 0
	// free: true
}

// ExampleCoordinator_Hold runs work under a lease that is kept alive and
// released at the end. The work stops when its context ends: on shutdown,
// or with cause ErrLeaseLost when the lease is lost.
func ExampleCoordinator_Hold() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(context.Background())

	err := c.Hold(context.Background(), coordinator.Project("apollo"), "scheduler-1",
		func(ctx context.Context, l coordinator.Lease) error {
			// every write carries l.Token, so a stale holder is refused
			fmt.Println("scheduling subplans of", l.Resource, "with a fencing token:", l.Token > 0)
			return nil
		}, coordinator.Wait(5*time.Second))
	fmt.Println("done:", err)
	// Output:
	// scheduling subplans of project/apollo with a fencing token: true
	// done: <nil>
}

// ExampleParseResource reads the "type/id" form.
func ExampleParseResource() {
	r, err := coordinator.ParseResource("plan/2026/q4")
	fmt.Println(r.Type, r.ID, err)
	_, err = coordinator.ParseResource("Plan/1")
	fmt.Println(err)
	// Output:
	// plan 2026/q4 <nil>
	// coordinator: invalid resource type "Plan": must match [a-z][a-z0-9_-]{0,63}
}

// ExampleCoordinator_ReleaseAll releases every lease of an owner at once,
// whatever its hold counts: a worker that restarts under the same owner
// name clears what its previous run left, or an owner is taken out of
// service. It reads the owner's lease index, never scans the keyspace.
func ExampleCoordinator_ReleaseAll() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := context.Background()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(ctx)

	for _, r := range []coordinator.Resource{coordinator.Plan("1"), coordinator.Plan("2"), coordinator.Project("x")} {
		if _, err := c.Acquire(ctx, r, "worker-7"); err != nil {
			fmt.Println("acquire:", err)
			return
		}
	}
	_, _ = c.Acquire(ctx, coordinator.Plan("1"), "worker-7") // a second hold
	_, _ = c.Acquire(ctx, coordinator.Plan("3"), "worker-8") // another owner's

	n, err := c.ReleaseAll(ctx, "worker-7")
	fmt.Println("released", n, "leases of worker-7, err", err)
	_, err = c.Inspect(ctx, coordinator.Plan("1"))
	fmt.Println("plan/1 free:", errors.Is(err, coordinator.ErrNotHeld))
	l, _ := c.Inspect(ctx, coordinator.Plan("3"))
	fmt.Println("plan/3 still held by", l.Owner)
	// Output:
	// released 3 leases of worker-7, err <nil>
	// plan/1 free: true
	// plan/3 still held by worker-8
}

// ExampleWait queues for a busy resource: Acquire with Wait returns when
// the holder releases (a Redis notification wakes the waiter), or fails
// with the conflict when the wait's time runs out.
func ExampleWait() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ctx := context.Background()
	c := coordinator.New(redisstore.New(client))
	defer c.Close(ctx)

	if _, err := c.Acquire(ctx, coordinator.Plan("42"), "worker-1"); err != nil {
		fmt.Println("acquire:", err)
		return
	}
	got := make(chan coordinator.Lease)
	go func() {
		l, err := c.Acquire(ctx, coordinator.Plan("42"), "worker-2", coordinator.Wait(10*time.Second))
		if err != nil {
			fmt.Println("wait:", err)
		}
		got <- l
	}()
	_, _ = c.Release(ctx, coordinator.Plan("42"), "worker-1")
	l := <-got
	fmt.Println(l.Resource, "now held by", l.Owner)

	_, err := c.Acquire(ctx, coordinator.Plan("42"), "worker-3", coordinator.Wait(50*time.Millisecond))
	fmt.Println("worker-3 gave up:", errors.Is(err, coordinator.ErrConflict))
	// Output:
	// plan/42 now held by worker-2
	// worker-3 gave up: true
}
