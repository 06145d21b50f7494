package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/coordinator"
)

// TestContention is scenario 5: many goroutines, spread over several
// worker processes (a coordinator and a client each), race for one
// resource after random start delays: exactly one wins, every other gets
// a conflict naming the winner. Then workers increment a counter in Redis
// under the lock with a plain GET and SET (a read-modify-write that loses
// updates without the lock): the total is exact. Without the lock the
// same increments lose updates (the control).
func TestContention(t *testing.T) {
	parallel(t)
	var (
		racers     = size(200, 1000)
		rounds     = size(3, 10)
		processes  = 8
		incWorkers = 16
		incEach    = size(20, 100)
	)
	w := newWorld(t, worldConfig{client: clientOptions(10 * time.Second)})
	ctx, cancel := context.WithTimeout(context.Background(), size(2*time.Minute, 20*time.Minute))
	defer cancel()
	procs := make([]*worker, processes)
	for i := range procs {
		procs[i] = w.worker(i)
	}

	// one winner of each race
	r := coordinator.Resource{Type: "chaos", ID: "contended"}
	for round := range rounds {
		var (
			wg                    sync.WaitGroup
			mu                    sync.Mutex
			winners               []coordinator.Lease
			conflicts, wrongNames int
			otherErrs             []error
		)
		start := make(chan struct{})
		for i := range racers {
			wk := procs[i%processes]
			owner := "racer-" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
			delay := time.Duration(rand.Int64N(int64(50 * time.Millisecond)))
			wg.Go(func() {
				<-start
				time.Sleep(delay) // the random start of the race, part of the scenario
				l, err := wk.c.Acquire(ctx, r, owner, coordinator.TTL(time.Minute))
				mu.Lock()
				defer mu.Unlock()
				ce, isConflict := errors.AsType[*coordinator.ConflictError](err)
				switch {
				case err == nil:
					winners = append(winners, l)
				case isConflict:
					conflicts++
					if ce.Count != 1 || ce.Token == 0 {
						wrongNames++
					}
				default:
					otherErrs = append(otherErrs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 || conflicts != racers-1 || len(otherErrs) != 0 {
			t.Fatalf("round %d: %d winners %v, %d conflicts, errors %v; want one winner and %d conflicts",
				round, len(winners), winners, conflicts, otherErrs, racers-1)
		}
		// every loser was told the winner's lease
		in, err := w.store(w.admin).Inspect(ctx, r)
		if err != nil || in.Owner != winners[0].Owner || in.Token != winners[0].Token || in.Count != 1 {
			t.Fatalf("round %d: Redis holds %+v, %v; the winner got %+v", round, in, err, winners[0])
		}
		if wrongNames != 0 {
			t.Errorf("round %d: %d conflicts did not name the winner's lease", round, wrongNames)
		}
		if _, err := procs[0].c.Release(ctx, r, winners[0].Owner); err != nil {
			t.Fatalf("release of the winner: %v", err)
		}
	}
	report(t, "contention: %d rounds of %d goroutines on %d worker processes racing for one resource after random delays up to 50 ms: exactly one winner each, %d conflicts naming it",
		rounds, racers, processes, racers-1)

	// increments under the lock
	key := w.prefix + ":counter"
	incr := func(ctx context.Context, c *redis.Client, rng *rand.Rand) error {
		v, err := c.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		time.Sleep(time.Duration(rng.Int64N(int64(time.Millisecond)))) // widen the race window
		return c.Set(ctx, key, v+1, 0).Err()
	}
	tr := fenced.NewTracker(fenced.NewMemory(), r.String())
	var holdID atomic.Int64
	run := func(locked bool) (int, time.Duration, error) {
		if err := w.admin.Del(ctx, key).Err(); err != nil {
			return 0, 0, err
		}
		var wg sync.WaitGroup
		errs := make(chan error, incWorkers)
		start := time.Now()
		for i := range incWorkers {
			wk := procs[i%processes]
			c := w.client()
			owner := fmt.Sprintf("incr-%d", i)
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			wg.Go(func() {
				for range incEach {
					var err error
					if locked {
						err = wk.c.Hold(ctx, r, owner, func(hctx context.Context, l coordinator.Lease) error {
							id := holdID.Add(1)
							defer tr.Exit(id)
							v, err := tr.Enter(hctx, id, owner, l.Token)
							if err != nil {
								return err
							}
							if err := incr(hctx, c, rng); err != nil {
								return err
							}
							_, err = tr.Write(hctx, id, owner, l.Token, v+1, false, false)
							return err
						}, coordinator.TTL(10*time.Second), coordinator.Wait(time.Minute))
					} else {
						err = incr(ctx, c, rng)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, 0, err
		}
		n, err := w.admin.Get(ctx, key).Int()
		return n, time.Since(start), err
	}
	want := incWorkers * incEach
	got, took, err := run(true)
	if err != nil {
		t.Fatalf("increments under the lock: %v", err)
	}
	unlocked, _, err := run(false)
	if err != nil {
		t.Fatalf("increments without the lock: %v", err)
	}
	st := tr.Stats()
	report(t, "  %d workers × %d increments (GET, then SET) under the lock: %d (want %d) in %v; overlapping holds seen by the resource %d; without the lock: %d (%d lost, the control)",
		incWorkers, incEach, got, want, took.Round(time.Millisecond), st.Overlaps, unlocked, want-unlocked)
	if got != want {
		t.Errorf("increments under the lock: %d, want %d", got, want)
	}
	if st.Overlaps != 0 || st.Rejected != 0 || st.Accepted != want {
		t.Errorf("the fenced resource saw %+v", st)
	}
	if unlocked >= want {
		t.Errorf("control failed: %d increments without the lock lost nothing", want)
	}
}
