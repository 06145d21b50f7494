package benchmarks_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// barRuns is how many alternating runs of each library TestBenchBar
// makes (-bar; run.sh smoke passes 5); 0 skips it.
var barRuns = flag.Int("bar", 0, "TestBenchBar: alternating runs of each library (0: skip the test)")

// barRun is the length of one run of the bar.
const barRun = 200 * time.Millisecond

// TestBenchBar is CI's benchmark bar (issue 15): lockcoord's pairs/s
// against the floor's in one process, at 1 and 64 goroutines, in
// alternating short runs (floor, lockcoord, lockcoord-autopipeline, then
// the other way round), so that a change of the machine's load hits each
// alike. It prints one line per library, the ratio of each run to its
// neighbouring floor run as median (min–max). It fails on errors only,
// never on a figure: CI machines are too noisy for a threshold, and the
// line is for a reader comparing commits.
func TestBenchBar(t *testing.T) {
	if *barRuns <= 0 {
		t.Skip("the benchmark bar runs with -bar N (bash benchmarks/run.sh smoke)")
	}
	libs := []lib{libFloor, libLockcoord, libLockcoordAutoPipeline}
	ratios := map[string]map[int][]float64{}
	for _, g := range []int{1, 64} {
		lks := make([]locker, len(libs))
		for i, l := range libs {
			c, _ := newClient(t)
			lks[i] = l.new(t, c)
			warm(t, lks[i])
		}
		owners := workerNames(g)
		for run := range *barRuns {
			rates := make([]float64, len(libs))
			order := make([]int, len(libs))
			for i := range order {
				order[i] = i
			}
			if run%2 == 1 {
				slices.Reverse(order)
			}
			for _, i := range order {
				r, err := pairsFor(lks[i], owners, "bar"+strconv.Itoa(run)+"-"+strconv.Itoa(g)+"-")
				if err != nil {
					t.Fatalf("%s, %d goroutines: %v", libs[i].name, g, err)
				}
				rates[i] = r
			}
			for i, l := range libs[1:] {
				if ratios[l.name] == nil {
					ratios[l.name] = map[int][]float64{}
				}
				ratios[l.name][g] = append(ratios[l.name][g], rates[i+1]/rates[0])
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	for _, l := range libs[1:] {
		fmt.Printf("bench-bar: %s/floor pairs/s 1 goroutine %s, 64 goroutines %s (%d alternating %v runs each; load average %s)\n",
			l.name, spreadOf(ratios[l.name][1]), spreadOf(ratios[l.name][64]), *barRuns, barRun,
			strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	}
}

// pairsFor runs acquire+release pairs of lk on distinct keys (prefix and
// a number) from one goroutine per owner for barRun, and returns the
// pairs per second.
func pairsFor(lk locker, owners []string, prefix string) (float64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	start := time.Now()
	deadline := start.Add(barRun)
	for _, owner := range owners {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1)
				if err := pair(ctx, lk, prefix+strconv.FormatInt(i, 10), owner); err != nil {
					errOnce.Do(func() { failure = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if failure != nil {
		return 0, failure
	}
	// the pairs begun before the deadline all ended
	return float64(next.Load()) / time.Since(start).Seconds(), nil
}

// spreadOf prints ratios as "median× (min–max)".
func spreadOf(r []float64) string {
	if len(r) == 0 {
		return "-"
	}
	s := slices.Sorted(slices.Values(r))
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", med, s[0], s[len(s)-1])
}
