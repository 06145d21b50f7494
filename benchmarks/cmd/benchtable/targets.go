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

// ratioAbove checks name's unit against more than min × base's.
func ratioAbove(name, base, unit string, min float64) func(d *data) (string, bool, bool) {
	at := ratioAtLeast(name, base, unit, min)
	return func(d *data) (string, bool, bool) {
		m, _, ok := at(d)
		x, _ := d.value(name, unit)
		y, _ := d.value(base, unit)
		return m, ok && x > min*y, ok
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

// targets are those of issue 6, issue 3's hand-off target, issue 13's
// targets for modes and AcquireAll and issue 14's for elections and
// expiry events.
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
	// issue 13: a pair costing at most 1.25 × the exclusive pair is a rate
	// of at least 1 / 1.25 = 0.80 of its
	{"pairs/s, 1 goroutine: shared / exclusive (issue 13)", "≥ 0.80",
		ratioAtLeast("Modes/goroutines=1/lib=lockcoord-shared", "Modes/goroutines=1/lib=lockcoord", "pairs/s", 0.80)},
	{"pairs/s, 1 goroutine: counted / exclusive (issue 13)", "≥ 0.80",
		ratioAtLeast("Modes/goroutines=1/lib=lockcoord-counted", "Modes/goroutines=1/lib=lockcoord", "pairs/s", 0.80)},
	{"pairs/s, 64 goroutines: shared / exclusive (issue 13)", "≥ 0.80",
		ratioAtLeast("Modes/goroutines=64/lib=lockcoord-shared", "Modes/goroutines=64/lib=lockcoord", "pairs/s", 0.80)},
	{"pairs/s, 64 goroutines: counted / exclusive (issue 13)", "≥ 0.80",
		ratioAtLeast("Modes/goroutines=64/lib=lockcoord-counted", "Modes/goroutines=64/lib=lockcoord", "pairs/s", 0.80)},
	{"2 resources, one partition: AcquireAll / two Acquires, ops/s (issue 13)", "> 1.00",
		ratioAbove("Multi/claims=2/lib=lockcoord-all-partition", "Multi/claims=2/lib=lockcoord-acquires-partition", "ops/s", 1)},
	// issue 14: a failover is the office's TTL, a sweep and the hand-off;
	// an expiry event arrives within a second of the expiry
	{"election failover p99, SIGKILL to the next leader, TTL 1 s (issue 14)", "≤ TTL + 1 s",
		failoverWithin("Failover/ttl=1s/lib=lockcoord", 1000)},
	{"election failover p99, SIGKILL to the next leader, TTL 200 ms (issue 14)", "≤ TTL + 1 s",
		failoverWithin("Failover/ttl=200ms/lib=lockcoord", 1000)},
	{"expiry event p50, expiry to the watcher's event (issue 14)", "≤ 1 s",
		atMost("ExpiryEvent/lib=lockcoord", "event-p50-ms", 1000)},
}

// failoverWithin checks an election's failover p99 against its TTL plus
// slack milliseconds.
func failoverWithin(name string, slack float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		x, ok1 := d.value(name, "failover-p99-ms")
		ttl, ok2 := d.value(name, "ttl-ms")
		if !ok1 || !ok2 {
			return "", false, false
		}
		return fmt.Sprintf("%s ms (TTL %s ms)", format(x), format(ttl)), x <= ttl+slack, true
	}
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
	fmt.Fprintf(w, "### Targets (issues 6, 13 and 14)\n\n| target | wanted | measured (medians) | |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w)
}
