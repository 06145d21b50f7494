package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// planStore is the shared state the workers change. It is a fenced
// resource: a write carrying a token lower than one it has already seen
// for the plan is refused, so a worker that was paused past its lease
// cannot overwrite the work of the next holder.
type planStore struct {
	mu       sync.Mutex
	state    map[string]string
	lastSeen map[string]uint64
	subplans map[string][]string
}

var errStaleToken = errors.New("plan store: stale fencing token")

func (s *planStore) transition(plan string, token uint64, from, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.lastSeen[plan] {
		return fmt.Errorf("%w: %d < %d", errStaleToken, token, s.lastSeen[plan])
	}
	if s.state[plan] != from {
		return fmt.Errorf("plan %s is %s, not %s", plan, s.state[plan], from)
	}
	s.lastSeen[plan] = token
	s.state[plan] = to
	return nil
}

func (s *planStore) assign(project string, token uint64, subplan string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.lastSeen[project] {
		return fmt.Errorf("%w: %d < %d", errStaleToken, token, s.lastSeen[project])
	}
	s.lastSeen[project] = token
	s.subplans[project] = append(s.subplans[project], subplan)
	return nil
}

// Example_planLifecycle drives a plan through draft → queued → running →
// completed with every transition made under the plan's lease via Hold,
// the long running phase kept alive by renewal, and the scheduler
// assigning subplans under the project's lease.
func Example_planLifecycle() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	c := coordinator.New(redisstore.New(client),
		coordinator.WithTTL("plan", 300*time.Millisecond)) // short, so the phase below needs renewals
	defer c.Close(context.Background())
	ctx := context.Background()

	store := &planStore{state: map[string]string{"plan/42": "draft"}, lastSeen: map[string]uint64{}, subplans: map[string][]string{}}
	plan, project := coordinator.Plan("42"), coordinator.Project("apollo")

	// the scheduler: subplans are assigned under the project's lease
	err := c.Hold(ctx, project, "scheduler", func(ctx context.Context, l coordinator.Lease) error {
		for _, sp := range []string{"42.1", "42.2"} {
			if err := store.assign(project.String(), l.Token, sp); err != nil {
				return err
			}
		}
		return nil
	}, coordinator.Wait(time.Second))
	fmt.Println("subplans assigned:", store.subplans[project.String()], err)

	// the worker: each transition under the plan's lease
	for _, step := range [][2]string{{"draft", "queued"}, {"queued", "running"}} {
		err := c.Hold(ctx, plan, "worker-1", func(ctx context.Context, l coordinator.Lease) error {
			return store.transition(plan.String(), l.Token, step[0], step[1])
		}, coordinator.Wait(time.Second))
		fmt.Println(step[0], "→", step[1], err)
	}
	// the long phase: the lease lives four TTLs thanks to the keep-alive
	err = c.Hold(ctx, plan, "worker-1", func(ctx context.Context, l coordinator.Lease) error {
		select {
		case <-time.After(1200 * time.Millisecond): // the work
		case <-ctx.Done():
			return context.Cause(ctx) // lease lost: stop writing
		}
		return store.transition(plan.String(), l.Token, "running", "completed")
	})
	fmt.Println("running → completed", err)

	// a paused worker holding an old token is refused by the store
	fmt.Println("stale write refused:", errors.Is(store.transition(plan.String(), 1, "completed", "draft"), errStaleToken))
	// Output:
	// subplans assigned: [42.1 42.2] <nil>
	// draft → queued <nil>
	// queued → running <nil>
	// running → completed <nil>
	// stale write refused: true
}
