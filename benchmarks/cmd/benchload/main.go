// Command benchload measures how much CPU the machine spent outside a
// benchmark run, so that benchmarks/run.sh publishes no table measured
// beside other work (issue 15).
//
// Usage:
//
//	benchload snapshot -pid PID FILE       record the CPU counters now in FILE
//	benchload check -pid PID [-max CPUS] FILE
//
// check compares the counters now with FILE's and prints one sentence for
// the report: the CPUs used outside the benchmark on average over the
// run, what the machine and the benchmark used, and the busiest other
// processes. It exits with status 3 when the outside load was above -max
// (default 0.25 CPU), 1 on errors.
//
// The method: /proc/stat counts the CPU time every CPU of the machine
// spent busy (user, nice, system, irq, softirq, steal; idle and iowait
// are not busy). /proc/PID/stat counts the CPU time of process PID
// (run.sh itself) and, in cutime and cstime, that of every descendant it
// waited for, theirs included: the test binary, the redis-server it
// starts and stops, tee. The snapshots are taken while run.sh has no
// child running but benchload itself, so the benchmark's share is the
// growth of PID's four counters, and what the machine spent beyond it is
// the load outside the benchmark. Both kinds of counters are in clock
// ticks; the run's length is the growth of all of /proc/stat's counters
// divided by the number of CPUs, so the figures are CPUs on average.
// Known limits: Postgres's work for the audit case counts as outside
// (about 0.7 CPU-seconds a round, under 0.01 CPU over a full run), as
// does a kernel thread's (ksoftirqd) work for the benchmark's own network
// traffic; the list of busiest processes
// names processes alive at the end, and those that ended during the run
// appear as "(ended during the run)".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	err := run(os.Args[1:], os.Stdout)
	var over *overError
	switch {
	case errors.As(err, &over):
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

// overError is check's verdict when the load outside the benchmark was
// above the limit.
type overError struct{ outside, max float64 }

func (e *overError) Error() string {
	return fmt.Sprintf("the load outside the benchmark was %.2f CPU on average, above the limit of %.2f", e.outside, e.max)
}

// procRoot is where /proc is (tests use a made-up one).
var procRoot = "/proc"

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: benchload snapshot|check -pid PID [-max CPUS] FILE")
	}
	fs := flag.NewFlagSet("benchload "+args[0], flag.ContinueOnError)
	pid := fs.Int("pid", 0, "the benchmark's process (run.sh): its CPU time and its waited-for descendants' are the benchmark's")
	maxLoad := fs.Float64("max", 0.25, "check: the most CPUs the machine may spend outside the benchmark, on average")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *pid <= 0 || fs.NArg() != 1 {
		return errors.New("usage: benchload snapshot|check -pid PID [-max CPUS] FILE")
	}
	file := fs.Arg(0)
	now, err := take(*pid)
	if err != nil {
		return err
	}
	switch args[0] {
	case "snapshot":
		return now.save(file)
	case "check":
		start, err := load(file)
		if err != nil {
			return err
		}
		u, err := usageOf(start, now, *pid, os.Getpid())
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(stdout, u.sentence()); err != nil {
			return err
		}
		if u.outside > *maxLoad {
			return &overError{u.outside, *maxLoad}
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q (snapshot or check)", args[0])
	}
}
