package main

import (
	"fmt"
	"io"
)

// target is one of the targets, checked against the run.
type target struct {
	what string
	want string
	// check returns the measured figure and whether the target is met;
	// ok is false when the run lacks the benchmarks it needs.
	check func(d *data) (measured string, met, ok bool)
}

// ratioAtLeast checks name's unit against min × base's.
func ratioAtLeast(name, base, unit string, min float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		x, ok1 := d.value(name, unit)
		y, ok2 := d.value(base, unit)
		if !ok1 || !ok2 || y == 0 {
			return "", false, false
		}
		r := x / y
		return fmt.Sprintf("%.2f × (%s vs %s %s)", r, format(x), format(y), unit), r >= min, true
	}
}

// atMost / atLeast check a figure against a bound.
func atLeast(name, unit string, min float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		x, ok := d.value(name, unit)
		return format(x) + " " + unit, x >= min, ok
	}
}

func atMost(name, unit string, max float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		x, ok := d.value(name, unit)
		return format(x) + " " + unit, x <= max, ok
	}
}

// targets are those of issue 6 (and issue 3's hand-off target).
var targets = []target{
	{"pairs/s, 1 goroutine: lockcoord / floor", "≥ 0.95",
		ratioAtLeast("Pairs/goroutines=1/lib=lockcoord", "Pairs/goroutines=1/lib=floor", "pairs/s", 0.95)},
	{"pairs/s, 1 goroutine: lockcoord / redislock", "≥ 1.00",
		ratioAtLeast("Pairs/goroutines=1/lib=lockcoord", "Pairs/goroutines=1/lib=redislock", "pairs/s", 1)},
	{"pairs/s, 64 goroutines, audit outbox on: lockcoord / floor", "≥ 0.90",
		ratioAtLeast("Pairs/goroutines=64/lib=lockcoord", "Pairs/goroutines=64/lib=floor", "pairs/s", 0.90)},
	{"contention successes/s, lockcoord (one coordinator)", "≥ 800",
		atLeast("Contention/lib=lockcoord", "successes/s", 800)},
	{"contention successes/s, lockcoord (a coordinator per goroutine)", "≥ 800",
		atLeast("Contention/lib=lockcoord-workers", "successes/s", 800)},
	{"contention wasted round trips per success, lockcoord (one coordinator)", "≤ 2",
		atMost("Contention/lib=lockcoord", "wasted-trips/op", 2)},
	{"contention wasted round trips per success, lockcoord (a coordinator per goroutine)", "≤ 2",
		atMost("Contention/lib=lockcoord-workers", "wasted-trips/op", 2)},
	{"hand-off p50, 1 waiter, lockcoord", "< 1,000 µs",
		atMost("Handoff/waiters=1/lib=lockcoord", "p50-µs", 999.999)},
	{"hand-off p50, 16 waiters, lockcoord (one coordinator)", "< 1,000 µs",
		atMost("Handoff/waiters=16/lib=lockcoord", "p50-µs", 999.999)},
	{"hand-off p50, 16 waiters, lockcoord (a coordinator per waiter)", "< 1,000 µs",
		atMost("Handoff/waiters=16/lib=lockcoord-workers", "p50-µs", 999.999)},
}

func renderTargets(w io.Writer, d *data) {
	var rows []string
	for _, t := range targets {
		m, met, ok := t.check(d)
		if !ok {
			continue
		}
		verdict := "missed"
		if met {
			verdict = "met"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", t.what, t.want, m, verdict))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "### Targets (issue 6)\n\n| target | wanted | measured (medians) | |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w)
}
