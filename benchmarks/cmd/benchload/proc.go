package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// snapshot is the machine's CPU counters at one moment, in clock ticks.
type snapshot struct {
	CPUs  int    `json:"cpus"`  // cpuN lines of /proc/stat
	Busy  uint64 `json:"busy"`  // every CPU: user, nice, system, irq, softirq, steal
	Total uint64 `json:"total"` // every CPU: busy, idle and iowait
	Tree  uint64 `json:"tree"`  // the benchmark: utime, stime, cutime and cstime of its process
	Procs []proc `json:"procs"` // every process
}

// proc is one process's CPU time so far.
type proc struct {
	PID   int    `json:"pid"`
	PPID  int    `json:"ppid"`
	Comm  string `json:"comm"`
	Start uint64 `json:"start"` // start time, ticks after boot: tells a reused pid
	Ticks uint64 `json:"ticks"` // utime + stime, its children not included
}

// take reads the counters now; pid is the benchmark's process.
func take(pid int) (*snapshot, error) {
	s := &snapshot{}
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return nil, err
	}
	if err := s.parseStat(b); err != nil {
		return nil, err
	}
	b, err = os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, fmt.Errorf("the benchmark's process: %w", err)
	}
	_, f, err := parseProcStat(b)
	if err != nil {
		return nil, fmt.Errorf("the benchmark's process: %w", err)
	}
	s.Tree = f.utime + f.stime + f.cutime + f.cstime
	s.Procs, err = processes()
	return s, err
}

// parseStat reads /proc/stat's "cpu" line and counts its "cpuN" lines.
func (s *snapshot) parseStat(b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			s.CPUs++
			continue
		}
		// cpu user nice system idle iowait irq softirq steal [guest guest_nice]
		// (guest time is in user and nice already)
		if len(fields) < 9 {
			return fmt.Errorf("/proc/stat: short cpu line %q", sc.Text())
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return fmt.Errorf("/proc/stat: %w", err)
			}
			v[i] = n
		}
		s.Busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		s.Total = s.Busy + v[3] + v[4]
		found = true
	}
	if !found || s.CPUs == 0 {
		return errors.New("/proc/stat: no cpu lines")
	}
	return sc.Err()
}

// statFields are the fields of /proc/PID/stat that benchload reads.
type statFields struct {
	ppid                         int
	utime, stime, cutime, cstime uint64
	start                        uint64
}

// parseProcStat reads one /proc/PID/stat: "pid (comm) state ppid ...";
// comm may hold spaces and parentheses, so the fields are counted from
// its last ')'.
func parseProcStat(b []byte) (comm string, f statFields, err error) {
	s := string(bytes.TrimSpace(b))
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", f, fmt.Errorf("stat: no (comm) in %q", s)
	}
	comm = s[open+1 : end]
	// fields[0] is field 3 of proc(5), state
	fields := strings.Fields(s[end+1:])
	if len(fields) < 20 {
		return "", f, fmt.Errorf("stat: %d fields after comm", len(fields))
	}
	num := func(field int) uint64 {
		n, e := strconv.ParseUint(fields[field-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("stat field %d: %w", field, e)
		}
		return n
	}
	f = statFields{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17), start: num(22)}
	return comm, f, err
}

// processes reads every process of /proc; one that ends while it reads
// is left out.
func processes() ([]proc, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		comm, f, err := parseProcStat(b)
		if err != nil {
			continue
		}
		out = append(out, proc{PID: pid, PPID: f.ppid, Comm: comm, Start: f.start, Ticks: f.utime + f.stime})
	}
	return out, nil
}

func (s *snapshot) save(file string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func load(file string) (*snapshot, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s := &snapshot{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}
