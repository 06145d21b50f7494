package main

import (
	"strings"
	"testing"
)

// issue15Sample is a run with every case of issue 15's targets: at 64
// goroutines lockcoord-autopipeline is faster than lockcoord, so it is
// the recommended configuration, at 1 goroutine too.
const issue15Sample = `pkg: github.com/lockcoord/lockcoord/benchmarks
BenchmarkPairs/goroutines=1/lib=floor-2                    	1000	100000 ns/op	10000 pairs/s	30.00 redis-µs/op	29.00 allocs/op
BenchmarkPairs/goroutines=1/lib=lockcoord-2                	1000	110000 ns/op	 9000 pairs/s	50.00 redis-µs/op	42.00 allocs/op
BenchmarkPairs/goroutines=1/lib=lockcoord-autopipeline-2   	1000	120000 ns/op	 8000 pairs/s	52.00 redis-µs/op	39.00 allocs/op
BenchmarkPairs/goroutines=1/lib=redislock-2                	1000	100000 ns/op	10000 pairs/s	30.00 redis-µs/op	35.00 allocs/op
BenchmarkPairs/goroutines=64/lib=floor-2                   	1000	 40000 ns/op	25000 pairs/s	20.00 redis-µs/op	30.00 allocs/op
BenchmarkPairs/goroutines=64/lib=lockcoord-2               	1000	100000 ns/op	10000 pairs/s	40.00 redis-µs/op	42.00 allocs/op
BenchmarkPairs/goroutines=64/lib=lockcoord-autopipeline-2  	1000	 20000 ns/op	50000 pairs/s	10.00 redis-µs/op	38.00 allocs/op
BenchmarkPairs/goroutines=64/lib=redislock-2               	1000	 40000 ns/op	25000 pairs/s	20.00 redis-µs/op	36.00 allocs/op
BenchmarkPairs/goroutines=64/lib=redislock-autopipeline-2  	1000	 10000 ns/op	100000 pairs/s	 5.00 redis-µs/op	30.00 allocs/op
BenchmarkScripts/op=acquire/lib=lockcoord-2                	1000	 50000 ns/op	20000 ops/s	12.00 script-µs/call
BenchmarkScripts/op=release/lib=lockcoord-2                	1000	 50000 ns/op	20000 ops/s	 9.00 script-µs/call
BenchmarkContention/lib=lockcoord-2                        	 500	1100000 ns/op	  900.0 successes/s	1000 hold-µs
BenchmarkContention/lib=lockcoord-workers-2                	 500	1100000 ns/op	  960.0 successes/s	1000 hold-µs
BenchmarkHandoff/waiters=16/lib=lockcoord-workers-2        	1000	3000000 ns/op	  240.0 p50-µs	4000 p99-µs
BenchmarkNetPairs/delay=200us/goroutines=1/lib=floor-2     	 300	1200000 ns/op	  833.0 pairs/s	250.0 delay-µs	1200 p50-µs
BenchmarkNetPairs/delay=200us/goroutines=1/lib=lockcoord-2 	 300	1300000 ns/op	  769.0 pairs/s	250.0 delay-µs	1300 p50-µs
`

func TestIssue15Targets(t *testing.T) {
	got := renderText(t, issue15Sample)
	for _, want := range []string{
		"### Targets of issue 15 (this run)",
		"| pairs/s, 64 goroutines, distinct keys, audit outbox on: lockcoord as recommended / floor | ≥ 2.00 | lockcoord-autopipeline: 2.00 × (50,000 vs 25,000 pairs/s) | met |",
		"| same case: lockcoord as recommended / redislock as its README sets it up (against redislock on an AutoPipeliner: not judged) | ≥ 1.50 | " +
			"lockcoord-autopipeline: 2.00 × (50,000 vs 25,000 pairs/s); against redislock-autopipeline (100,000 pairs/s) 0.50 × | met |",
		// the configuration chosen at 64 goroutines is judged at 1
		"| pairs/s, 1 goroutine: lockcoord as recommended / floor | ≥ 0.85 | lockcoord-autopipeline: 0.80 × (8,000 vs 10,000 pairs/s) | missed |",
		"| Redis script time per pair (commandstats, acquire + release), lockcoord | ≤ 20 µs | 21.0 µs (acquire 12.0 + release 9.00 script-µs/call) | missed |",
		"| Redis CPU per pair (INFO cpu), 64 goroutines: lockcoord / floor, plain client | ≤ 1.50 | 2.00 × (40.0 vs 20.0 redis-µs/op) | missed |",
		"| client allocations per pair, 1 goroutine, lockcoord | ≤ 40 | 42.0 allocs/op | missed |",
		"| contention, 64 goroutines on one key, 1 ms hold: successes/s / hold-limited ideal, lockcoord (one coordinator) | ≥ 0.95 | 0.90 (900 successes/s of 1,000, hold 1,000 µs) | missed |",
		"| same, lockcoord (a coordinator per goroutine) | ≥ 0.95 | 0.96 (960 successes/s of 1,000, hold 1,000 µs) | met |",
		"| hand-off p50, 16 waiters in 16 processes (a coordinator each), lockcoord | ≤ 250 µs | 240 p50-µs | met |",
		// the realistic network's table, the link's real delay first
		"### Issue 15: acquire+release pairs over a link with 200 µs added each way, 1 goroutine, distinct keys (`NetPairs/delay=200us/goroutines=1`)",
		"| lib | pairs/s | × floor | delay-µs | p50-µs | µs/op |",
		"| lockcoord | 769 | 0.92 | 250 | 1,300 | 1,300 |",
		// redislock on an AutoPipeliner, side by side
		"| redislock-autopipeline | 100,000 | 4.00 | 4.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
	// the issue 15 table comes first
	if i, j := strings.Index(got, "Targets of issue 15"), strings.Index(got, "### Targets (issues"); i < 0 || j < 0 || i > j {
		t.Errorf("issue 15's targets at %d, the others at %d", i, j)
	}
}

// TestIssue15TargetsPartial: with only some of the cases, the others'
// rows say they were not run; the plain lockcoord, faster at 64
// goroutines, is the recommended one.
func TestIssue15TargetsPartial(t *testing.T) {
	got := renderText(t, `pkg: github.com/lockcoord/lockcoord/benchmarks
BenchmarkPairs/goroutines=64/lib=floor-2                   	1000	 40000 ns/op	10000 pairs/s
BenchmarkPairs/goroutines=64/lib=lockcoord-2               	1000	100000 ns/op	 9000 pairs/s
BenchmarkPairs/goroutines=64/lib=lockcoord-autopipeline-2  	1000	 20000 ns/op	 8000 pairs/s
BenchmarkPairs/goroutines=1/lib=floor-2                    	1000	100000 ns/op	10000 pairs/s
BenchmarkPairs/goroutines=1/lib=lockcoord-2                	1000	110000 ns/op	 9000 pairs/s
`)
	for _, want := range []string{
		"| pairs/s, 64 goroutines, distinct keys, audit outbox on: lockcoord as recommended / floor | ≥ 2.00 | lockcoord: 0.90 × (9,000 vs 10,000 pairs/s) | missed |",
		"| pairs/s, 1 goroutine: lockcoord as recommended / floor | ≥ 0.85 | lockcoord: 0.90 × (9,000 vs 10,000 pairs/s) | met |",
		"| same case: lockcoord as recommended / redislock as its README sets it up (against redislock on an AutoPipeliner: not judged) | ≥ 1.50 | not in this run | - |",
		"| hand-off p50, 16 waiters in 16 processes (a coordinator each), lockcoord | ≤ 250 µs | not in this run | - |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
	// a run without any of the cases has no issue 15 table
	if got := renderText(t, modesSample); strings.Contains(got, "issue 15") {
		t.Errorf("an issue 15 table without its cases:\n%s", got)
	}
}

// TestRecommendedAtOneGoroutine: a run of 1 goroutine only picks the
// faster configuration there.
func TestRecommendedAtOneGoroutine(t *testing.T) {
	got := renderText(t, `pkg: github.com/lockcoord/lockcoord/benchmarks
BenchmarkPairs/goroutines=1/lib=floor-2                    	1000	100000 ns/op	10000 pairs/s
BenchmarkPairs/goroutines=1/lib=lockcoord-2                	1000	110000 ns/op	 8000 pairs/s
BenchmarkPairs/goroutines=1/lib=lockcoord-autopipeline-2   	1000	120000 ns/op	 9000 pairs/s
`)
	if want := "| pairs/s, 1 goroutine: lockcoord as recommended / floor | ≥ 0.85 | lockcoord-autopipeline: 0.90 × (9,000 vs 10,000 pairs/s) | met |"; !strings.Contains(got, want) {
		t.Errorf("output lacks %q\n%s", want, got)
	}
}
