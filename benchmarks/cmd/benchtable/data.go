package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// data is every result of the input, by benchmark.
type data struct {
	config  map[string]string // file configuration (first value seen)
	benches []*bench          // in input order
	byName  map[string]*bench
}

// bench is one benchmark (sub-benchmark), all its runs.
type bench struct {
	name  string // without "Benchmark" and the -GOMAXPROCS suffix
	group string // name without its lib= part: the case the row belongs to
	lib   string // the value of its lib= part, "" if none
	units []string
	vals  map[string][]float64
}

func readFiles(paths []string) (*data, error) {
	files := benchfmt.Files{Paths: paths, AllowStdin: true}
	d := &data{config: map[string]string{}, byName: map[string]*bench{}}
	for files.Scan() {
		switch r := files.Result().(type) {
		case *benchfmt.Result:
			d.add(r)
		case *benchfmt.SyntaxError:
			// lines that are not results (test logs) are not errors
		}
	}
	if err := files.Err(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *data) add(r *benchfmt.Result) {
	for _, c := range r.Config {
		if _, ok := d.config[c.Key]; !ok && c.File {
			d.config[c.Key] = string(c.Value)
		}
	}
	base, parts := r.Name.Parts()
	var name, group bytes.Buffer
	name.Write(base)
	group.Write(base)
	lib := ""
	for _, p := range parts {
		if p[0] == '-' { // GOMAXPROCS
			continue
		}
		name.Write(p)
		if v, ok := bytes.CutPrefix(p, []byte("/lib=")); ok {
			lib = string(v)
			continue
		}
		group.Write(p)
	}
	b := d.byName[name.String()]
	if b == nil {
		b = &bench{name: name.String(), group: group.String(), lib: lib, vals: map[string][]float64{}}
		d.byName[b.name] = b
		d.benches = append(d.benches, b)
	}
	for _, v := range r.Values {
		if _, ok := b.vals[v.Unit]; !ok {
			b.units = append(b.units, v.Unit)
		}
		b.vals[v.Unit] = append(b.vals[v.Unit], v.Value)
	}
}

// summary is the median of a unit's runs and its 95% confidence interval.
type summary struct {
	center, lo, hi float64
	n              int
}

func (b *bench) summary(unit string) (summary, bool) {
	v := b.vals[unit]
	if len(v) == 0 {
		return summary{}, false
	}
	s := benchmath.AssumeNothing.Summary(benchmath.NewSample(slices.Clone(v), &benchmath.DefaultThresholds), 0.95)
	return summary{center: s.Center, lo: s.Lo, hi: s.Hi, n: len(v)}, true
}

// value returns the median of the unit for the benchmark named name.
func (d *data) value(name, unit string) (float64, bool) {
	b := d.byName[name]
	if b == nil {
		return 0, false
	}
	s, ok := b.summary(unit)
	return s.center, ok
}

// groups returns the cases in input order, each with its rows.
func (d *data) groups() [][]*bench {
	var order []string
	rows := map[string][]*bench{}
	for _, b := range d.benches {
		if _, ok := rows[b.group]; !ok {
			order = append(order, b.group)
		}
		rows[b.group] = append(rows[b.group], b)
	}
	out := make([][]*bench, len(order))
	for i, g := range order {
		out[i] = rows[g]
	}
	return out
}

// samples returns the largest number of runs of any benchmark.
func (d *data) samples() int {
	n := 0
	for _, b := range d.benches {
		for _, v := range b.vals {
			n = max(n, len(v))
		}
	}
	return n
}

// primary is the unit a case's ratios compare: its rate (a unit per
// second), else the memory per lease, else the median latency (of a
// failover, of an expiry event), else the time per op.
func primary(rows []*bench) string {
	for _, b := range rows {
		for _, u := range b.units {
			if strings.HasSuffix(u, "/s") {
				return u
			}
		}
	}
	for _, u := range []string{"B/lease", "p50-µs", "failover-p50-ms", "event-p50-ms"} {
		for _, b := range rows {
			if _, ok := b.vals[u]; ok {
				return u
			}
		}
	}
	return "sec/op"
}

// unitOrder is the order of the columns after the primary one.
var unitOrder = []string{"delay-µs", "p50-µs", "p99-µs", "wasted-trips/op", "trips/op", "hold-µs",
	"redis-µs/op", "B/lease", "key-B/lease",
	"failover-p99-ms", "after-expiry-p50-ms", "event-p99-ms", "ttl-ms", // issue 14
	"sec/op", "B/op", "allocs/op"}

// columns returns the units of a case's rows, primary first.
func columns(rows []*bench) []string {
	p := primary(rows)
	seen := map[string]bool{p: true}
	cols := []string{p}
	for _, u := range unitOrder {
		for _, b := range rows {
			if _, ok := b.vals[u]; ok && !seen[u] {
				seen[u] = true
				cols = append(cols, u)
			}
		}
	}
	for _, b := range rows {
		for _, u := range b.units {
			if !seen[u] {
				seen[u] = true
				cols = append(cols, u)
			}
		}
	}
	return cols
}

// format prints a figure with as many digits as it deserves.
func format(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 1000:
		return thousands(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func thousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
