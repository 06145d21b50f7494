package main

import (
	"fmt"
	"io"
)

// The libraries of issue 15's "lockcoord as the README recommends":
// the faster at 64 goroutines of lockcoord as shipped and with
// redisstore.WithAutoPipeline stands for it, and the target at 1
// goroutine holds that same configuration to account.
var recommendedLibs = []string{"lockcoord", "lockcoord-autopipeline"}

// recommended returns the row of the recommended configuration: the one
// of recommendedLibs with the most pairs/s at 64 goroutines (at 1 when
// the run has no 64-goroutine rows).
func recommended(d *data) (string, bool) {
	for _, g := range []string{"64", "1"} {
		best, bestRate := "", 0.0
		for _, l := range recommendedLibs {
			if r, ok := d.value("Pairs/goroutines="+g+"/lib="+l, "pairs/s"); ok && r > bestRate {
				best, bestRate = l, r
			}
		}
		if best != "" {
			return best, true
		}
	}
	return "", false
}

// recommendedRatio checks the recommended configuration's pairs/s at g
// goroutines against min × base's, and names the configuration; with
// also, it states that library's ratio too (not judged).
func recommendedRatio(g, base string, minRatio float64, also string) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		lib, ok := recommended(d)
		if !ok {
			return "", false, false
		}
		name := "Pairs/goroutines=" + g + "/lib="
		m, met, ok := ratioAtLeast(name+lib, name+base, "pairs/s", minRatio)(d)
		if !ok {
			return "", false, false
		}
		m = lib + ": " + m
		if x, ok := d.value(name+also, "pairs/s"); ok && x > 0 {
			y, _ := d.value(name+lib, "pairs/s")
			m += fmt.Sprintf("; against %s (%s pairs/s) %.2f ×", also, format(x), y/x)
		}
		return m, met, true
	}
}

// ratioAtMost checks name's unit against at most max × base's.
func ratioAtMost(name, base, unit string, maxRatio float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		m, _, ok := ratioAtLeast(name, base, unit, 0)(d)
		x, _ := d.value(name, unit)
		y, _ := d.value(base, unit)
		return m, ok && x <= maxRatio*y, ok
	}
}

// scriptsPerPair checks the script time of an acquisition plus that of a
// release (the Scripts case, each alone) against at most maxMicros.
func scriptsPerPair(lib string, maxMicros float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		a, ok1 := d.value("Scripts/op=acquire/lib="+lib, "script-µs/call")
		r, ok2 := d.value("Scripts/op=release/lib="+lib, "script-µs/call")
		if !ok1 || !ok2 {
			return "", false, false
		}
		return fmt.Sprintf("%s µs (acquire %s + release %s script-µs/call)", format(a+r), format(a), format(r)), a+r <= maxMicros, true
	}
}

// idealShare checks a contention row's successes/s against min × the
// hold-limited ideal, 1,000,000 / its mean hold in µs.
func idealShare(name string, minShare float64) func(d *data) (string, bool, bool) {
	return func(d *data) (string, bool, bool) {
		s, ok1 := d.value(name, "successes/s")
		h, ok2 := d.value(name, "hold-µs")
		if !ok1 || !ok2 || h == 0 {
			return "", false, false
		}
		ideal := 1e6 / h
		return fmt.Sprintf("%.2f (%s successes/s of %s, hold %s µs)", s/ideal, format(s), format(ideal), format(h)), s >= minShare*ideal, true
	}
}

// issue15Targets are issue 15's targets, every one of its table: the
// report shows each, met or missed, or says that the run lacks its case.
var issue15Targets = []target{
	{"pairs/s, 64 goroutines, distinct keys, audit outbox on: lockcoord as recommended / floor", "≥ 2.00",
		recommendedRatio("64", "floor", 2, "")},
	{"same case: lockcoord as recommended / redislock as its README sets it up (against redislock on an AutoPipeliner: not judged)", "≥ 1.50",
		recommendedRatio("64", "redislock", 1.5, "redislock-autopipeline")},
	{"pairs/s, 1 goroutine: lockcoord as recommended / floor", "≥ 0.85",
		recommendedRatio("1", "floor", 0.85, "")},
	{"Redis script time per pair (commandstats, acquire + release), lockcoord", "≤ 20 µs",
		scriptsPerPair("lockcoord", 20)},
	{"Redis CPU per pair (INFO cpu), 64 goroutines: lockcoord / floor, plain client", "≤ 1.50",
		ratioAtMost("Pairs/goroutines=64/lib=lockcoord", "Pairs/goroutines=64/lib=floor", "redis-µs/op", 1.5)},
	{"client allocations per pair, 1 goroutine, lockcoord", "≤ 40",
		atMost("Pairs/goroutines=1/lib=lockcoord", "allocs/op", 40)},
	{"contention, 64 goroutines on one key, 1 ms hold: successes/s / hold-limited ideal, lockcoord (one coordinator)", "≥ 0.95",
		idealShare("Contention/lib=lockcoord", 0.95)},
	{"same, lockcoord (a coordinator per goroutine)", "≥ 0.95",
		idealShare("Contention/lib=lockcoord-workers", 0.95)},
	{"hand-off p50, 16 waiters in 16 processes (a coordinator each), lockcoord", "≤ 250 µs",
		atMost("Handoff/waiters=16/lib=lockcoord-workers", "p50-µs", 250)},
}

// renderIssue15 prints issue 15's targets, when the run has at least one
// of their cases; a target whose case did not run says so.
func renderIssue15(w io.Writer, d *data) {
	var rows []string
	measured := false
	for _, t := range issue15Targets {
		m, met, ok := t.check(d)
		verdict := "missed"
		switch {
		case !ok:
			m, verdict = "not in this run", "-"
		case met:
			verdict = "met"
		}
		measured = measured || ok
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", t.what, t.want, m, verdict))
	}
	if !measured {
		return
	}
	fmt.Fprintf(w, "### Targets of issue 15 (this run)\n\n| target | wanted | measured (medians) | |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w)
}
