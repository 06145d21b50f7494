package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sample is go test -bench output as the suite prints it: configuration
// lines, two runs of each benchmark, test log noise.
const sample = `nproc: 2
gomaxprocs: 2
go-version: go1.26.8
cpu-model: Test CPU
date: 2026-01-02
redis-version: 7.0.15
goos: linux
goarch: amd64
pkg: github.com/lockcoord/lockcoord/benchmarks
BenchmarkPairs/goroutines=1/lib=floor-2         	    1000	    100000 ns/op	     10000 pairs/s	        80.00 p50-µs	       300.0 p99-µs	     2.000 trips/op
BenchmarkPairs/goroutines=1/lib=lockcoord-2     	    1000	    105000 ns/op	      9600 pairs/s	        85.00 p50-µs	       320.0 p99-µs	     2.000 trips/op
BenchmarkPairs/goroutines=1/lib=redislock-2     	    1000	    110000 ns/op	      9000 pairs/s	        90.00 p50-µs	       310.0 p99-µs	     2.000 trips/op
BenchmarkPairs/goroutines=1/lib=floor-2         	    1000	    100000 ns/op	     10200 pairs/s	        80.00 p50-µs	       300.0 p99-µs	     2.000 trips/op
BenchmarkPairs/goroutines=1/lib=lockcoord-2     	    1000	    105000 ns/op	      9800 pairs/s	        85.00 p50-µs	       320.0 p99-µs	     2.000 trips/op
BenchmarkPairs/goroutines=1/lib=redislock-2     	    1000	    110000 ns/op	      9200 pairs/s	        90.00 p50-µs	       310.0 p99-µs	     2.000 trips/op
    some_test.go:12: a log line
BenchmarkContention/lib=lockcoord-2             	     500	   1300000 ns/op	       700.0 successes/s	     2.500 wasted-trips/op	      1100 hold-µs
BenchmarkMemory/leases=100000/lib=floor-2       	   10000	     50000 ns/op	       150.0 B/lease	        64.00 key-B/lease
BenchmarkMemory/leases=100000/lib=lockcoord-2   	   10000	     60000 ns/op	       600.0 B/lease	       200.0 key-B/lease
BenchmarkList/leases=100000/lib=lockctl-2       	       2	 700000000 ns/op	    142857 leases/s
BenchmarkHandoff/waiters=16/lib=redislock-2     	      20	  50000000 ns/op	     50000 p50-µs	     90000 p99-µs
BenchmarkHandoff/waiters=16/lib=lockcoord-2     	    1000	   3000000 ns/op	       500.0 p50-µs	      4000 p99-µs
PASS
ok  	github.com/lockcoord/lockcoord/benchmarks	10.0s
`

func generate(t *testing.T, args ...string) string {
	t.Helper()
	return renderText(t, sample, args...)
}

// renderText runs benchtable with args on go test output text (written to a
// file of the test's own) and returns what it printed.
func renderText(t *testing.T, text string, args ...string) string {
	t.Helper()
	in := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(append(args, in), &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTables(t *testing.T) {
	got := generate(t, "-load", "1.00 at the start", "-command", "make bench")
	for _, want := range []string{
		"Run of 2026-01-02 on Test CPU, 2 CPUs (nproc), GOMAXPROCS 2; Redis 7.0.15, Go go1.26.8 (linux/amd64)",
		"Load: 1.00 at the start.",
		"medians of 2 runs",
		"Command: `make bench`",
		"### Cases 1-2: acquire+release pairs, 1 goroutine, distinct keys (`Pairs/goroutines=1`)",
		"| lib | pairs/s | × floor | × redislock | p50-µs | p99-µs | trips/op | µs/op |",
		// medians: floor 10,100, lockcoord 9,700, redislock 9,100
		"| floor | 10,100 | 1.00 | 1.11 | 80.0 | 300 | 2.00 | 100 |",
		"| lockcoord | 9,700 | 0.96 | 1.07 | 85.0 | 320 | 2.00 | 105 |",
		"| redislock | 9,100 | 0.90 | 1.00 | 90.0 | 310 | 2.00 | 110 |",
		// one run: no ratio bases, the rate first
		"| lib | successes/s | wasted-trips/op | hold-µs | µs/op |",
		"| lockcoord | 700 | 2.50 | 1,100 | 1,300 |",
		// memory compares bytes per lease
		"| lib | B/lease | × floor | key-B/lease | µs/op |",
		"| lockcoord | 600 | 4.00 | 200 | 60.0 |",
		"| lockctl | 142,857 | 700,000 |",
		// latency cases compare the median latency, and titles match whole
		// name segments
		"### Case 6: hand-off latency, 16 waiters (`Handoff/waiters=16`)",
		"| lib | p50-µs | × redislock | p99-µs | µs/op |",
		"| lockcoord | 500 | 0.01 | 4,000 | 3,000 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
}

func TestTargets(t *testing.T) {
	got := generate(t)
	for _, want := range []string{
		"| pairs/s, 1 goroutine: lockcoord / floor | ≥ 0.95 | 0.96 × (9,700 vs 10,100 pairs/s) | met |",
		"| pairs/s, 1 goroutine: lockcoord / redislock | ≥ 1.00 | 1.07 × (9,700 vs 9,100 pairs/s) | met |",
		"| contention successes/s, lockcoord (one coordinator) | ≥ 800 | 700 successes/s | missed |",
		"| contention wasted round trips per success, lockcoord (one coordinator) | ≤ 2 | 2.50 wasted-trips/op | missed |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
	// targets whose benchmarks did not run are left out (issue 15's table
	// says "not in this run" instead)
	_, got, found := strings.Cut(got, "### Targets (issues")
	if !found {
		t.Fatal("no table of the other issues' targets")
	}
	if strings.Contains(got, "| pairs/s, 64 goroutines") || strings.Contains(got, "| hand-off p50, 1 waiter") {
		t.Errorf("targets of cases not in the input:\n%s", got)
	}
}

func TestUpdateBetweenMarkers(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "benchmarks.md")
	prose := "# Benchmarks\n\nHand-written analysis.\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\n## Notes\n\nMore prose.\n"
	if err := os.WriteFile(doc, []byte(prose), 0o644); err != nil {
		t.Fatal(err)
	}
	generate(t, "-o", doc)
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if strings.Contains(got, "old table") {
		t.Error("the old generated part is still there")
	}
	for _, want := range []string{"Hand-written analysis.", "## Notes\n\nMore prose.\n", "| floor | 10,100 |", beginMarker, endMarker} {
		if !strings.Contains(got, want) {
			t.Errorf("updated file lacks %q:\n%s", want, got)
		}
	}
	// a second run gives the same file
	generate(t, "-o", doc)
	again, _ := os.ReadFile(doc)
	if !bytes.Equal(again, b) {
		t.Error("a second update changed the file")
	}
}

func TestUpdateCreatesTheFile(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "new.md")
	generate(t, "-o", doc)
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# Benchmarks\n\n"+beginMarker) || !strings.Contains(string(b), "| floor | 10,100 |") {
		t.Errorf("created file:\n%s", b)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("PASS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{empty}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no benchmark results") {
		t.Errorf("input without results: %v", err)
	}
	in := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	noMarkers := filepath.Join(dir, "doc.md")
	if err := os.WriteFile(noMarkers, []byte("# prose only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-o", noMarkers, in}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "benchtable:begin") {
		t.Errorf("file without markers: %v", err)
	}
	if err := run([]string{filepath.Join(dir, "missing.txt")}, &bytes.Buffer{}); err == nil {
		t.Error("a missing input file is no error")
	}
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{0.5: "0.50", 12.34: "12.3", 123.4: "123", 1234.5: "1,234", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := format(v); got != want {
			t.Errorf("format(%v) = %q, want %q", v, got, want)
		}
	}
}
