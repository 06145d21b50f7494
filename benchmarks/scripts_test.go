package benchmarks_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

// BenchmarkScripts measures each operation alone, 1 goroutine, so that
// INFO commandstats gives the Redis execution time of each script
// (script-µs/call) beside the floor's: what a lockcoord script costs
// Redis, the network aside. One op is one call.
func BenchmarkScripts(b *testing.B) {
	for _, l := range []lib{libFloor, libLockcoord, libLockcoordNoOutbox, libRedislock} {
		b.Run("op=acquire/lib="+l.name, func(b *testing.B) {
			c, cnt := newClient(b)
			flush(b, c)
			lk := l.new(b, c)
			warm(b, lk)
			hs := make([]held, 0, b.N)
			pr := startProbe(b, c, cnt)
			lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error {
				h, ok, err := lk.obtain(ctx, "k"+strconv.Itoa(i), "w0")
				if err == nil && !ok {
					err = errors.New("conflict on a fresh key")
				}
				hs = append(hs, h)
				return err
			})
			pr.report(b, "ops/s", b.N)
			lat.report(b)
			for _, h := range hs {
				if err := h.release(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=release/lib="+l.name, func(b *testing.B) {
			c, cnt := newClient(b)
			flush(b, c)
			lk := l.new(b, c)
			warm(b, lk)
			hs := make([]held, b.N)
			for i := range hs {
				h, ok, err := lk.obtain(context.Background(), "k"+strconv.Itoa(i), "w0")
				if err != nil || !ok {
					b.Fatalf("obtain: %v (ok %v)", err, ok)
				}
				hs[i] = h
			}
			pr := startProbe(b, c, cnt)
			lat := runWorkers(b, 1, func(ctx context.Context, w, i int) error { return hs[i].release(ctx) })
			pr.report(b, "ops/s", b.N)
			lat.report(b)
		})
	}
}
