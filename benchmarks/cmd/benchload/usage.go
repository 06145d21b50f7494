package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// usage is what the machine spent between two snapshots, in CPUs on
// average over that time.
type usage struct {
	cpus                    int
	machine, bench, outside float64
	others                  []named // the busiest processes outside, busiest first
}

// named is the CPU of the processes of one name.
type named struct {
	name string
	cpus float64
}

// busiest is how many processes the sentence names, and least what one
// must have used to be named.
const (
	busiest = 3
	least   = 0.01
)

// usageOf compares two snapshots; tree is the benchmark's process and
// self benchload's (both left out of the busiest others, with the
// processes whose parent they are).
func usageOf(start, end *snapshot, tree, self int) (*usage, error) {
	if end.Total <= start.Total || start.CPUs == 0 {
		return nil, errors.New("no time passed between the snapshots")
	}
	if end.Busy < start.Busy || end.Tree < start.Tree {
		return nil, errors.New("the counters went backwards: snapshots of another boot or process?")
	}
	ticks := float64(end.Total-start.Total) / float64(start.CPUs) // of one CPU
	u := &usage{
		cpus:    start.CPUs,
		machine: float64(end.Busy-start.Busy) / ticks,
		bench:   float64(end.Tree-start.Tree) / ticks,
	}
	u.outside = max(0, u.machine-u.bench)
	u.others = others(start, end, tree, self, ticks, u.outside)
	return u, nil
}

// others names the processes outside the benchmark alive at end by the
// CPU they used since start, busiest first; what the outside load holds
// beyond them is "(ended during the run)".
func others(start, end *snapshot, tree, self int, ticks, outside float64) []named {
	before := map[int]proc{}
	for _, p := range start.Procs {
		before[p.PID] = p
	}
	parent := map[int]int{}
	for _, p := range end.Procs {
		parent[p.PID] = p.PPID
	}
	inside := func(pid int) bool {
		for range 64 { // a parent chain, in case of a loop in a made-up /proc
			if pid == tree || pid == self {
				return true
			}
			if pid = parent[pid]; pid <= 1 {
				return false
			}
		}
		return false
	}
	byName := map[string]float64{}
	var named0 float64
	for _, p := range end.Procs {
		if inside(p.PID) {
			continue
		}
		used := p.Ticks
		if b, ok := before[p.PID]; ok && b.Start == p.Start && b.Ticks <= used {
			used -= b.Ticks
		}
		byName[p.Comm] += float64(used) / ticks
		named0 += float64(used) / ticks
	}
	if rest := outside - named0; rest > 0 {
		byName["(ended during the run)"] += rest
	}
	var out []named
	for n, c := range byName {
		if c >= least {
			out = append(out, named{n, c})
		}
	}
	slices.SortFunc(out, func(a, b named) int {
		return cmp.Or(cmp.Compare(b.cpus, a.cpus), strings.Compare(a.name, b.name))
	})
	return out[:min(busiest, len(out))]
}

// sentence states the usage for the report's load line.
func (u *usage) sentence() string {
	s := fmt.Sprintf("outside the benchmark %.2f CPU on average (the machine %.2f of %d CPUs busy, the benchmark's processes %.2f)",
		u.outside, u.machine, u.cpus, u.bench)
	if len(u.others) > 0 {
		parts := make([]string, len(u.others))
		for i, o := range u.others {
			parts[i] = fmt.Sprintf("%s %.2f", o.name, o.cpus)
		}
		s += "; busiest other processes: " + strings.Join(parts, ", ")
	}
	return s
}
