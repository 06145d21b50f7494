package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeProc writes a made-up /proc: /proc/stat's cpu counters (user,
// system, idle, iowait; the rest 0) on 2 CPUs, and one stat file per
// process.
type fakeProc struct{ dir string }

func newFakeProc(t *testing.T) *fakeProc {
	t.Helper()
	f := &fakeProc{dir: t.TempDir()}
	old := procRoot
	procRoot = f.dir
	t.Cleanup(func() { procRoot = old })
	return f
}

func (f *fakeProc) cpu(t *testing.T, user, system, idle, iowait uint64) {
	t.Helper()
	stat := fmt.Sprintf("cpu  %d 0 %d %d %d 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\nintr 12345\nctxt 6789\n",
		user, system, idle, iowait)
	if err := os.WriteFile(filepath.Join(f.dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proc writes pid's stat: its parent, start time, utime and stime,
// cutime and cstime.
func (f *fakeProc) proc(t *testing.T, pid int, comm string, ppid int, start, utime, stime, cutime, cstime uint64) {
	t.Helper()
	dir := filepath.Join(f.dir, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// fields 3.. of proc(5): state ppid pgrp session tty_nr tpgid flags
	// minflt cminflt majflt cmajflt utime stime cutime cstime priority
	// nice num_threads itrealvalue starttime vsize rss
	stat := fmt.Sprintf("%d (%s) S %d 1 1 0 -1 4194304 10 0 0 0 %d %d %d %d 20 0 1 0 %d 1000 100\n",
		pid, comm, ppid, utime, stime, cutime, cstime, start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeProc) remove(t *testing.T, pid int) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(f.dir, fmt.Sprint(pid))); err != nil {
		t.Fatal(err)
	}
}

// TestCheck runs snapshot and check on a made-up run: 1,000 ticks of
// each of 2 CPUs, 1,600 of them busy, 1,300 the benchmark's (run.sh's own
// and its children's), so 0.30 CPU outside: above 0.25, within 0.35.
func TestCheck(t *testing.T) {
	f := newFakeProc(t)
	f.cpu(t, 1000, 500, 8000, 500)
	f.proc(t, 100, "bash", 1, 50, 10, 5, 60, 25)    // run.sh: 100 ticks so far
	f.proc(t, 200, "postgres", 1, 20, 40, 10, 0, 0) // 50 ticks so far
	f.proc(t, 500, "old", 1, 10, 800, 100, 0, 0)    // ends; its pid is reused
	f.proc(t, 600, "kworker/0:1", 2, 5, 0, 3, 0, 0) // a kernel thread
	snap := filepath.Join(t.TempDir(), "load0")
	if err := run([]string{"snapshot", "-pid", "100", snap}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}

	f.cpu(t, 2200, 900, 8350, 550)                          // +1,600 busy, +2,000 in all
	f.proc(t, 100, "bash", 1, 50, 12, 6, 1210, 172)         // +1,300
	f.proc(t, 300, "benchmarks.test", 100, 900, 5, 5, 0, 0) // a child of run.sh's: inside
	f.proc(t, 200, "postgres", 1, 20, 200, 50, 0, 0)        // +200: 0.20 CPU
	f.proc(t, 500, "new (x) y", 1, 2000, 20, 10, 0, 0)      // a new process: all of its 30 ticks
	f.proc(t, 600, "kworker/0:1", 2, 5, 0, 4, 0, 0)         // +1: below 0.01 CPU, not named

	var out bytes.Buffer
	err := run([]string{"check", "-pid", "100", snap}, &out)
	var over *overError
	if !errors.As(err, &over) || !strings.Contains(err.Error(), "0.30 CPU on average, above the limit of 0.25") {
		t.Fatalf("check: %v, want the over-limit error", err)
	}
	want := "outside the benchmark 0.30 CPU on average (the machine 1.60 of 2 CPUs busy, the benchmark's processes 1.30); " +
		"busiest other processes: postgres 0.20, (ended during the run) 0.07, new (x) y 0.03\n"
	if got := out.String(); got != want {
		t.Errorf("check printed\n%q, want\n%q", got, want)
	}

	out.Reset()
	if err := run([]string{"check", "-pid", "100", "-max", "0.35", snap}, &out); err != nil {
		t.Errorf("check -max 0.35: %v", err)
	}
	if !strings.HasPrefix(out.String(), "outside the benchmark 0.30 CPU") {
		t.Errorf("check -max 0.35 printed %q", out.String())
	}
}

// TestCheckIdle: a machine that was busy with the benchmark alone has
// nothing outside, even when its counters round the other way.
func TestCheckIdle(t *testing.T) {
	f := newFakeProc(t)
	f.cpu(t, 100, 100, 1000, 0)
	f.proc(t, 100, "bash", 1, 1, 0, 0, 0, 0)
	snap := filepath.Join(t.TempDir(), "load0")
	if err := run([]string{"snapshot", "-pid", "100", snap}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	f.cpu(t, 1100, 300, 1800, 0)                  // 1,000 ticks of each CPU, 1,200 busy
	f.proc(t, 100, "bash", 1, 1, 0, 0, 1000, 210) // 1,210: more than the machine's
	var out bytes.Buffer
	if err := run([]string{"check", "-pid", "100", "-max", "0", snap}, &out); err != nil {
		t.Errorf("check: %v", err)
	}
	if want := "outside the benchmark 0.00 CPU on average (the machine 1.20 of 2 CPUs busy, the benchmark's processes 1.21)\n"; out.String() != want {
		t.Errorf("check printed %q, want %q", out.String(), want)
	}
}

func TestErrors(t *testing.T) {
	f := newFakeProc(t)
	f.cpu(t, 100, 100, 1000, 0)
	f.proc(t, 100, "bash", 1, 1, 5, 5, 0, 0)
	dir := t.TempDir()
	snap := filepath.Join(dir, "load0")
	for _, args := range [][]string{
		nil,
		{"snapshot", snap},                    // no -pid
		{"snapshot", "-pid", "100"},           // no file
		{"snapshot", "-pid", "999", snap},     // no such process
		{"bogus", "-pid", "100", snap},        // no such command
		{"check", "-pid", "100", snap},        // no snapshot yet
		{"check", "-pid", "100", "-max", "x"}, // a bad flag
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
	if err := run([]string{"snapshot", "-pid", "100", snap}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// no time passed
	if err := run([]string{"check", "-pid", "100", snap}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no time passed") {
		t.Errorf("check at once: %v", err)
	}
	// counters of another process
	f.cpu(t, 200, 200, 2000, 0)
	f.proc(t, 100, "bash", 1, 1, 1, 1, 0, 0)
	if err := run([]string{"check", "-pid", "100", snap}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "backwards") {
		t.Errorf("check after a restart: %v", err)
	}
	// a damaged snapshot, /proc/stat or process stat
	if err := os.WriteFile(snap, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"check", "-pid", "100", snap}, &bytes.Buffer{}); err == nil {
		t.Error("a damaged snapshot: no error")
	}
	if err := os.WriteFile(filepath.Join(f.dir, "stat"), []byte("cpu 1 2 3\ncpu0 1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"snapshot", "-pid", "100", snap}, &bytes.Buffer{}); err == nil {
		t.Error("a short cpu line: no error")
	}
	f.remove(t, 100)
	if err := os.MkdirAll(filepath.Join(f.dir, "100"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "100", "stat"), []byte("100 bash S 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.cpu(t, 1, 1, 1, 1)
	if err := run([]string{"snapshot", "-pid", "100", snap}, &bytes.Buffer{}); err == nil {
		t.Error("a stat without (comm): no error")
	}
}

func TestParse(t *testing.T) {
	var s snapshot
	if err := s.parseStat([]byte("intr 1\n")); err == nil {
		t.Error("/proc/stat without cpu lines: no error")
	}
	if err := s.parseStat([]byte("cpu 1 2 3 4 5 6 7 x\ncpu0 1\n")); err == nil {
		t.Error("/proc/stat with a bad number: no error")
	}
	if _, _, err := parseProcStat([]byte("1 (a) S 1 2 3")); err == nil {
		t.Error("a short process stat: no error")
	}
	if _, _, err := parseProcStat([]byte("1 (a) S x 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 1")); err == nil {
		t.Error("a process stat with a bad number: no error")
	}
	comm, f, err := parseProcStat([]byte("7 (a (b) c) R 3 1 1 0 -1 0 0 0 0 0 11 12 13 14 20 0 1 0 99 1 1\n"))
	if err != nil || comm != "a (b) c" || f != (statFields{ppid: 3, utime: 11, stime: 12, cutime: 13, cstime: 14, start: 99}) {
		t.Errorf("parseProcStat = %q %+v %v", comm, f, err)
	}
}

// TestRealProc takes two snapshots of this machine's /proc: the counters
// parse, and check states a usage.
func TestRealProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	snap := filepath.Join(t.TempDir(), "load0")
	pid := fmt.Sprint(os.Getpid())
	if err := run([]string{"snapshot", "-pid", pid, snap}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	s, err := load(snap)
	if err != nil || s.CPUs < 1 || s.Total == 0 || len(s.Procs) == 0 {
		t.Fatalf("snapshot %+v: %v", s, err)
	}
	for {
		now, err := take(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now.Total > s.Total {
			break
		}
		runtime.Gosched()
	}
	var out bytes.Buffer
	err = run([]string{"check", "-pid", pid, "-max", "1000", snap}, &out)
	if err != nil || !strings.HasPrefix(out.String(), "outside the benchmark ") {
		t.Errorf("check: %q, %v", out.String(), err)
	}
}
