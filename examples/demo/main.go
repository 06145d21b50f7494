// Command demo shows lockcoord at work on an embedded miniredis: eight
// workers, each with its own Redis client and Coordinator as if they were
// separate processes, contend for a few plan and project leases. They
// re-enter leases they hold, run into conflicts, and check two invariants
// the whole time:
//
//   - no two workers are ever inside the critical section of one resource;
//   - every fresh acquisition of a resource carries a fencing token
//     greater than any token seen before for it (a re-entry keeps its token).
//
// It prints a summary and exits 1 when an invariant failed.
//
//	go run ./examples/demo -duration 3s
//
// A temporary program: `lockctl demo` replaces it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "how long the workers contend")
	workers := flag.Int("workers", 8, "number of worker goroutines")
	flag.Parse()
	if err := run(*duration, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// section is the critical section of one resource: who is inside, and the
// highest fencing token seen, as a protected resource would record it.
type section struct {
	mu        sync.Mutex
	inside    string
	lastToken uint64
	entries   int
}

type stats struct {
	acquired, reentered, conflicts, released atomic.Int64
}

func run(duration time.Duration, workers int) error {
	if workers < 1 {
		return fmt.Errorf("-workers %d: need at least one", workers)
	}
	mr, err := miniredis.Run()
	if err != nil {
		return fmt.Errorf("start miniredis: %w", err)
	}
	defer mr.Close()

	resources := []coordinator.Resource{
		coordinator.Plan("42"), coordinator.Plan("43"), coordinator.Project("apollo"),
	}
	sections := make(map[coordinator.Resource]*section, len(resources))
	for _, r := range resources {
		sections[r] = &section{}
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var (
		st       stats
		failMu   sync.Mutex
		failures []error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		failMu.Lock()
		defer failMu.Unlock()
		failures = append(failures, err)
	}
	for i := range workers {
		owner := fmt.Sprintf("worker-%d", i+1)
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		c := coordinator.New(redisstore.New(client))
		wg.Go(func() {
			defer func() {
				if err := c.Close(context.Background()); err != nil {
					fail(fmt.Errorf("%s: close coordinator: %w", owner, err))
				}
				if err := client.Close(); err != nil {
					fail(fmt.Errorf("%s: close client: %w", owner, err))
				}
			}()
			w := worker{owner: owner, c: c, st: &st, fail: fail}
			for ctx.Err() == nil {
				r := resources[rand.IntN(len(resources))]
				if err := w.round(ctx, r, sections[r]); err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
			}
		})
	}
	wg.Wait()

	fmt.Printf("%d workers, %s on an embedded miniredis\n", workers, duration)
	fmt.Printf("  acquired %d, re-entered %d, conflicts %d, released %d\n",
		st.acquired.Load(), st.reentered.Load(), st.conflicts.Load(), st.released.Load())
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = client.Close() }() // in-process miniredis: nothing to report
	check := coordinator.New(redisstore.New(client))
	for _, r := range resources {
		s := sections[r]
		state := "free"
		if l, err := check.Inspect(context.Background(), r); err == nil {
			state = "still held by " + l.Owner
			fail(fmt.Errorf("%s: %s after every worker closed", r, state))
		} else if !errors.Is(err, coordinator.ErrNotHeld) {
			fail(fmt.Errorf("inspect %s: %w", r, err))
		}
		fmt.Printf("  %-16s %5d critical sections, last fencing token %d, %s\n", r, s.entries, s.lastToken, state)
	}
	if st.acquired.Load() == 0 {
		fail(errors.New("no lease was ever acquired"))
	}
	if len(failures) > 0 {
		for i, err := range failures {
			if i == 20 {
				fmt.Printf("  ... and %d more\n", len(failures)-i)
				break
			}
			fmt.Println("  FAIL:", err)
		}
		return fmt.Errorf("%d invariant violations or errors", len(failures))
	}
	fmt.Println("  ok: never two workers in one critical section; fencing tokens strictly increased")
	return nil
}

type worker struct {
	owner string
	c     *coordinator.Coordinator
	st    *stats
	fail  func(error)
}

// round tries to take r once. Holding it, the worker enters r's critical
// section, sometimes re-enters the lease, works a little, leaves the
// section and releases every hold. It returns only errors that end the
// worker; invariant violations go to w.fail.
func (w *worker) round(ctx context.Context, r coordinator.Resource, s *section) error {
	// Redis calls are not cut short when the demo's time is up: a call
	// applied in Redis but cancelled on the way back would leave a lease
	// behind that the worker does not know it holds.
	call := context.WithoutCancel(ctx)
	l, err := w.c.Acquire(call, r, w.owner)
	var conflict *coordinator.ConflictError
	switch {
	case errors.As(err, &conflict):
		w.st.conflicts.Add(1)
		if conflict.Holder == w.owner {
			w.fail(fmt.Errorf("%s: conflict with itself on %s", w.owner, r))
		}
		return pause(ctx, time.Duration(rand.IntN(500))*time.Microsecond)
	case err != nil:
		return fmt.Errorf("%s: acquire %s: %w", w.owner, r, err)
	}
	w.st.acquired.Add(1)
	if l.Count != 1 {
		w.fail(fmt.Errorf("%s: fresh acquisition of %s has hold count %d", w.owner, r, l.Count))
	}

	s.enter(w.owner, l.Token, w.fail)
	holds := 1
	if rand.IntN(3) == 0 { // re-enter: count up, same token
		again, err := w.c.Acquire(call, r, w.owner)
		if err == nil {
			holds++
			w.st.reentered.Add(1)
			if again.Count != 2 || again.Token != l.Token {
				w.fail(fmt.Errorf("%s: re-entry of %s gave count %d token %d, want 2 and %d",
					w.owner, r, again.Count, again.Token, l.Token))
			}
		} else {
			w.fail(fmt.Errorf("%s: re-enter %s: %w", w.owner, r, err))
		}
	}
	time.Sleep(time.Duration(50+rand.IntN(250)) * time.Microsecond) // the work
	s.leave(w.owner, w.fail)

	for holds > 0 {
		left, err := w.c.Release(call, r, w.owner)
		if err != nil {
			return fmt.Errorf("%s: release %s: %w", w.owner, r, err)
		}
		holds--
		w.st.released.Add(1)
		if left.Count != holds {
			w.fail(fmt.Errorf("%s: release of %s left %d holds, want %d", w.owner, r, left.Count, holds))
		}
	}
	return nil
}

func (s *section) enter(owner string, token uint64, fail func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inside != "" {
		fail(fmt.Errorf("%s entered a critical section %s was in", owner, s.inside))
	}
	if token <= s.lastToken {
		fail(fmt.Errorf("%s got fencing token %d, not above the last one seen, %d", owner, token, s.lastToken))
	}
	s.inside, s.lastToken = owner, max(s.lastToken, token)
	s.entries++
}

func (s *section) leave(owner string, fail func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inside != owner {
		fail(fmt.Errorf("%s left a critical section %q was in", owner, s.inside))
	}
	s.inside = ""
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
