package main

import (
	"strings"
	"testing"
)

// modesSample is a run of issue 13's cases: shared pairs within the
// target, counted pairs outside it, AcquireAll of 2 claims exactly as
// fast as two Acquires (not faster: missed).
const modesSample = `pkg: github.com/lockcoord/lockcoord/benchmarks
BenchmarkModes/goroutines=1/lib=lockcoord-2          	    1000	    100000 ns/op	     10000 pairs/s
BenchmarkModes/goroutines=1/lib=lockcoord-shared-2   	    1000	    110000 ns/op	      9000 pairs/s
BenchmarkModes/goroutines=1/lib=lockcoord-counted-2  	    1000	    150000 ns/op	      7000 pairs/s
BenchmarkMulti/claims=2/lib=lockcoord-all-partition-2       	    1000	    250000 ns/op	      4000 ops/s
BenchmarkMulti/claims=2/lib=lockcoord-acquires-partition-2  	    1000	    250000 ns/op	      4000 ops/s
BenchmarkMulti/claims=2/lib=redislock-2                     	    1000	    125000 ns/op	      8000 ops/s
`

func TestIssue13Targets(t *testing.T) {
	got := renderText(t, modesSample)
	for _, want := range []string{
		"### Targets (issues 6, 13 and 14)",
		"| pairs/s, 1 goroutine: shared / exclusive (issue 13) | ≥ 0.80 | 0.90 × (9,000 vs 10,000 pairs/s) | met |",
		"| pairs/s, 1 goroutine: counted / exclusive (issue 13) | ≥ 0.80 | 0.70 × (7,000 vs 10,000 pairs/s) | missed |",
		"| 2 resources, one partition: AcquireAll / two Acquires, ops/s (issue 13) | > 1.00 | 1.00 × (4,000 vs 4,000 ops/s) | missed |",
		"### Issue 13: 2 resources taken and released",
		"| lockcoord-all-partition | 4,000 | 0.50 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
	if strings.Contains(got, "64 goroutines: shared") {
		t.Errorf("a target of a case not in the input:\n%s", got)
	}
}
