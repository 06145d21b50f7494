package benchmarks_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/bsm/redislock"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// modeCase is one way of taking a lease: its row name and its options.
type modeCase struct {
	lib  string
	opts []coordinator.AcquireOption
}

// modeCases are the exclusive pair and its shared and counted twins.
var modeCases = []modeCase{
	{"lockcoord", nil},
	{"lockcoord-shared", []coordinator.AcquireOption{coordinator.Shared()}},
	{"lockcoord-counted", []coordinator.AcquireOption{coordinator.Permits(4)}},
}

// skipUnsupported skips b when the store cannot take a lease in this
// mode yet (ErrUnsupported), so that the suite runs before the store
// supports every mode, and says so in the output.
func skipUnsupported(b *testing.B, co *coordinator.Coordinator, opts []coordinator.AcquireOption) {
	b.Helper()
	r := resource("probe-mode")
	_, err := co.Acquire(context.Background(), r, "probe", opts...)
	switch {
	case errors.Is(err, coordinator.ErrUnsupported):
		b.Skipf("the store does not support this mode yet: %v", err)
	case err != nil:
		b.Fatalf("probe: %v", err)
	}
	if _, err := co.Release(context.Background(), r, "probe"); err != nil {
		b.Fatalf("probe release: %v", err)
	}
}

// BenchmarkModes measures acquire+release pairs on distinct keys in each
// mode: exclusive (the Pairs case), shared, and shared capped at 4
// permits (counted); one op is one pair. Issue 13's target: a shared or
// counted pair costs at most 1.25 × an exclusive pair.
func BenchmarkModes(b *testing.B) {
	for _, g := range []int{1, 64} {
		for _, m := range modeCases {
			b.Run("goroutines="+strconv.Itoa(g)+"/lib="+m.lib, func(b *testing.B) {
				c, cnt := newClient(b)
				flush(b, c)
				co := newLockcoord(b, c, 1).coords[0]
				skipUnsupported(b, co, m.opts)
				owners := workerNames(g)
				b.ReportAllocs()
				pr := startProbe(b, c, cnt)
				lat := runWorkers(b, g, func(ctx context.Context, w, i int) error {
					r := resource("k" + strconv.Itoa(i))
					if _, err := co.Acquire(ctx, r, owners[w], m.opts...); err != nil {
						return err
					}
					_, err := co.Release(ctx, r, owners[w])
					return err
				})
				pr.report(b, "pairs/s", b.N)
				lat.report(b)
			})
		}
	}
}

// BenchmarkSharedOneKey measures 64 goroutines (owners) taking and
// giving back one resource at once, shared and counted with room for all:
// readers that never wait for one another. One op is one pair.
func BenchmarkSharedOneKey(b *testing.B) {
	const g = 64
	for _, m := range []modeCase{
		{"lockcoord-shared", []coordinator.AcquireOption{coordinator.Shared()}},
		{"lockcoord-counted", []coordinator.AcquireOption{coordinator.Permits(g)}},
	} {
		b.Run("goroutines="+strconv.Itoa(g)+"/lib="+m.lib, func(b *testing.B) {
			c, cnt := newClient(b)
			flush(b, c)
			co := newLockcoord(b, c, 1).coords[0]
			skipUnsupported(b, co, m.opts)
			owners := workerNames(g)
			r := resource("shared")
			b.ReportAllocs()
			pr := startProbe(b, c, cnt)
			lat := runWorkers(b, g, func(ctx context.Context, w, i int) error {
				if _, err := co.Acquire(ctx, r, owners[w], m.opts...); err != nil {
					return err
				}
				_, err := co.Release(ctx, r, owners[w])
				return err
			})
			pr.report(b, "pairs/s", b.N)
			lat.report(b)
		})
	}
}

// claimKeys returns n keys whose resources fall in one partition of
// layout (together) or in n different partitions (spread).
func claimKeys(layout redisstore.Layout, n int, together bool) ([]string, error) {
	byPart := map[int][]string{}
	used := map[int]bool{}
	var spread []string
	for i := 0; i < 100_000; i++ {
		key := "m" + strconv.Itoa(i)
		p := layout.Partition(resource(key))
		byPart[p] = append(byPart[p], key)
		if together && len(byPart[p]) == n {
			return byPart[p], nil
		}
		if !together && !used[p] {
			used[p] = true
			if spread = append(spread, key); len(spread) == n {
				return spread, nil
			}
		}
	}
	return nil, fmt.Errorf("no %d keys found (together %v) in %d partitions", n, together, layout.Partitions())
}

// BenchmarkMulti measures taking several resources and giving them back:
// lockcoord's AcquireAll of 2 and 8 exclusive claims, in one partition
// (one script, once the scripts take several resources) and spread over
// as many partitions; the same resources taken by one Acquire each; and
// bsm/redislock, whose v0.9.4 has no ObtainMulti (it exists only on its
// main branch, unreleased), with one Obtain per key. One op is taking
// every resource and releasing each; the rows are named
// lockcoord-all-<layout>, lockcoord-acquires-<layout> and redislock.
// Issue 13's target: AcquireAll of 2 claims in one partition is faster
// than two Acquires.
func BenchmarkMulti(b *testing.B) {
	for _, n := range []int{2, 8} {
		claims := "claims=" + strconv.Itoa(n)
		for _, layout := range []string{"partition", "spread"} {
			together := layout == "partition"
			b.Run(claims+"/lib=lockcoord-all-"+layout, func(b *testing.B) { benchAcquireAll(b, n, together) })
			b.Run(claims+"/lib=lockcoord-acquires-"+layout, func(b *testing.B) { benchAcquires(b, n, together) })
		}
		b.Run(claims+"/lib=redislock", func(b *testing.B) { benchRedislockMulti(b, n) })
	}
}

func benchAcquireAll(b *testing.B, n int, together bool) {
	c, cnt := newClient(b)
	flush(b, c)
	lk := newLockcoord(b, c, 1)
	co := lk.coords[0]
	keys, err := claimKeys(lk.stores[0].Layout(), n, together)
	if err != nil {
		b.Fatal(err)
	}
	claims := make([]coordinator.Claim, n)
	for i, k := range keys {
		claims[i] = coordinator.Claim{Resource: resource(k)}
	}
	b.ReportAllocs()
	pr := startProbe(b, c, cnt)
	lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
		ls, err := co.AcquireAll(ctx, "w0", claims)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if _, err := co.Release(ctx, l.Resource, "w0"); err != nil {
				return err
			}
		}
		return nil
	})
	pr.report(b, "ops/s", b.N)
	lat.report(b)
}

func benchAcquires(b *testing.B, n int, together bool) {
	c, cnt := newClient(b)
	flush(b, c)
	lk := newLockcoord(b, c, 1)
	co := lk.coords[0]
	keys, err := claimKeys(lk.stores[0].Layout(), n, together)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	pr := startProbe(b, c, cnt)
	lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
		for _, k := range keys {
			if _, err := co.Acquire(ctx, resource(k), "w0"); err != nil {
				return err
			}
		}
		for _, k := range keys {
			if _, err := co.Release(ctx, resource(k), "w0"); err != nil {
				return err
			}
		}
		return nil
	})
	pr.report(b, "ops/s", b.N)
	lat.report(b)
}

func benchRedislockMulti(b *testing.B, n int) {
	c, cnt := newClient(b)
	flush(b, c)
	rl := redislock.New(c)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "m" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	pr := startProbe(b, c, cnt)
	lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
		locks := make([]*redislock.Lock, 0, n)
		for _, k := range keys {
			l, err := rl.Obtain(ctx, k, leaseTTL, nil)
			if err != nil {
				return err
			}
			locks = append(locks, l)
		}
		for _, l := range locks {
			if err := l.Release(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	pr.report(b, "ops/s", b.N)
	lat.report(b)
}
