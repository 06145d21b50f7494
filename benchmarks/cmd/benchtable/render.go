package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// meta is what the report states beside the figures.
type meta struct {
	load    string
	command string
}

// caseTitles name the cases of the issue, by the start of their group.
var caseTitles = []struct{ prefix, title string }{
	{"Floor", "Loopback round trip: one PING (what `redis-cli --latency` shows)"},
	{"Pairs/goroutines=1", "Cases 1-2: acquire+release pairs, 1 goroutine, distinct keys"},
	{"Pairs/goroutines=64", "Cases 3 and 7: acquire+release pairs, 64 goroutines, distinct keys"},
	{"NetPairs/delay=200us/goroutines=1", "Issue 15: acquire+release pairs over a link with 200 µs added each way, 1 goroutine, distinct keys"},
	{"NetPairs/delay=200us/goroutines=64", "Issue 15: acquire+release pairs over a link with 200 µs added each way, 64 goroutines, distinct keys"},
	{"Reentrant", "Case 4: re-entrant acquire (count 2) and two releases, 1 goroutine"},
	{"Renew", "Case 4: renewal of a held lease, 1 goroutine"},
	{"Modes/goroutines=1", "Issue 13: exclusive, shared and counted (4 permits) acquire+release pairs, 1 goroutine, distinct keys"},
	{"Modes/goroutines=64", "Issue 13: exclusive, shared and counted (4 permits) acquire+release pairs, 64 goroutines, distinct keys"},
	{"SharedOneKey", "Issue 13: 64 goroutines sharing one key (shared, and counted with 64 permits)"},
	{"Multi/claims=2", "Issue 13: 2 resources taken and released: AcquireAll (one partition, spread), one Acquire each, redislock (one Obtain each)"},
	{"Multi/claims=8", "Issue 13: 8 resources taken and released: AcquireAll (one partition, spread), one Acquire each, redislock (one Obtain each)"},
	{"Contention", "Case 5: contention, 64 goroutines on one key, 1 ms hold"},
	{"Scripts/op=acquire", "What Redis spends: each acquisition alone, 1 goroutine"},
	{"Scripts/op=release", "What Redis spends: each release alone, 1 goroutine"},
	{"Handoff/waiters=1", "Case 6: hand-off latency, 1 waiter"},
	{"Handoff/waiters=16", "Case 6: hand-off latency, 16 waiters"},
	{"MirrorDrain", "Case 7: audit mirror draining a backlog into Postgres"},
	{"Memory", "Case 8: Redis memory per held lease; reading one lease"},
	{"List", "Case 8: `lockctl list --json` over the held leases"},
	{"Failover", "Issue 14: election failover, the leader's process killed (SIGKILL) until the next leader's function runs; 3 candidates, a process each"},
	{"ExpiryEvent", "Issue 14: expiry events, a lease's expiry until its watcher has the `expired` event"},
}

func title(group string) string {
	for _, c := range caseTitles {
		if group == c.prefix || strings.HasPrefix(group, c.prefix+"/") {
			return c.title + " (`" + group + "`)"
		}
	}
	return "`" + group + "`"
}

// heading is a unit's column heading.
func heading(unit string) string {
	if unit == "sec/op" {
		return "µs/op"
	}
	return unit
}

// cell prints a unit's median (seconds as microseconds).
func cell(unit string, v float64) string {
	if unit == "sec/op" {
		v *= 1e6
	}
	return format(v)
}

func render(w io.Writer, d *data, m meta) {
	c := d.config
	fmt.Fprintf(w, "Run of %s on %s", orDash(c["date"]), machine(c))
	fmt.Fprintf(w, "; Redis %s, Go %s (%s/%s), benchmarks and redis-server on the same machine over loopback.",
		orDash(c["redis-version"]), orDash(c["go-version"]), orDash(c["goos"]), orDash(c["goarch"]))
	if m.load != "" {
		fmt.Fprintf(w, " Load: %s.", m.load)
	}
	fmt.Fprintf(w, " Figures are medians of %d runs with benchstat's 95%% confidence interval on the first column.\n\n", d.samples())
	if m.command != "" {
		fmt.Fprintf(w, "Command: `%s`\n\n", m.command)
	}

	renderIssue15(w, d)
	renderTargets(w, d)

	for _, rows := range d.groups() {
		fmt.Fprintf(w, "### %s\n\n", title(rows[0].group))
		cols := columns(rows)
		p := cols[0]
		bases := []string{}
		for _, base := range []string{"floor", "redislock"} {
			for _, b := range rows {
				if b.lib == base {
					bases = append(bases, base)
				}
			}
		}
		hdr := []string{"lib", heading(p)}
		for _, base := range bases {
			hdr = append(hdr, "× "+base)
		}
		for _, u := range cols[1:] {
			hdr = append(hdr, heading(u))
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(hdr, " | "), strings.Repeat("---|", len(hdr)))
		for _, b := range rows {
			lib := b.lib
			if lib == "" {
				lib = "lockcoord"
			}
			line := []string{lib}
			if s, ok := b.summary(p); ok {
				line = append(line, cell(p, s.center)+spread(s))
			} else {
				line = append(line, "")
			}
			for _, base := range bases {
				line = append(line, ratio(d, b, rows, base, p))
			}
			for _, u := range cols[1:] {
				if s, ok := b.summary(u); ok {
					line = append(line, cell(u, s.center))
				} else {
					line = append(line, "")
				}
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(line, " | "))
		}
		fmt.Fprintln(w)
	}
}

// spread prints the confidence interval as ±percent of the median, when
// there is more than one run.
func spread(s summary) string {
	if s.n < 2 || s.center == 0 || math.IsInf(s.lo, 0) || math.IsInf(s.hi, 0) {
		return ""
	}
	pct := math.Max(s.hi-s.center, s.center-s.lo) / math.Abs(s.center) * 100
	return fmt.Sprintf(" ±%.0f%%", pct)
}

// ratio is row b's primary figure over that of the base library's row.
func ratio(d *data, b *bench, rows []*bench, base, unit string) string {
	for _, r := range rows {
		if r.lib != base {
			continue
		}
		x, ok1 := d.value(b.name, unit)
		y, ok2 := d.value(r.name, unit)
		if !ok1 || !ok2 || y == 0 {
			return ""
		}
		return fmt.Sprintf("%.2f", x/y)
	}
	return ""
}

func machine(c map[string]string) string {
	var parts []string
	if v := c["cpu-model"]; v != "" {
		parts = append(parts, v)
	} else if v := c["cpu"]; v != "" {
		parts = append(parts, strings.TrimSpace(v))
	}
	if v := c["nproc"]; v != "" {
		parts = append(parts, v+" CPUs (nproc)")
	}
	if v := c["gomaxprocs"]; v != "" {
		parts = append(parts, "GOMAXPROCS "+v)
	}
	if len(parts) == 0 {
		return "an unnamed machine"
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
