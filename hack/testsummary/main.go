// Command testsummary ends make test: it reads the go test -json events
// gotestsum saved (--jsonfile), writes go test's own output to the test
// log (the "ok" and "FAIL" lines hack/ci.sh and CI read), and prints one
// summary: packages, tests, skipped, failures, the merged coverage figure
// (hack/cover.sh's total, the one the gate reads; a package's own figure
// counts only what its tests run and is not shown) and the time taken.
//
//	go run ./hack/testsummary -json .cache/test.json -log .cache/test.log -seconds 312 -coverage 97.4%
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// event is one go test -json event (go doc cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// tally counts what the events report.
type tally struct {
	packages, failedPkgs   map[string]bool
	tests, skipped, failed int
	skippedNames           []string
}

func (t *tally) add(e event) {
	switch {
	case e.Test == "" && e.Package != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		t.packages[e.Package] = true
		if e.Action == "fail" {
			t.failedPkgs[e.Package] = true
		}
	case e.Test != "" && e.Action == "pass":
		t.tests++
	case e.Test != "" && e.Action == "fail":
		t.tests++
		t.failed++
	case e.Test != "" && e.Action == "skip":
		t.tests++
		t.skipped++
		t.skippedNames = append(t.skippedNames, e.Package+"."+e.Test)
	}
}

// read tallies the events of r and copies their output to log.
func read(r io.Reader, log io.Writer) (*tally, error) {
	t := &tally{packages: map[string]bool{}, failedPkgs: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a build error's plain text
		}
		t.add(e)
		if _, err := io.WriteString(log, e.Output); err != nil {
			return nil, err
		}
	}
	return t, sc.Err()
}

func main() {
	jsonFile := flag.String("json", ".cache/test.json", "go test -json events (gotestsum --jsonfile)")
	logFile := flag.String("log", ".cache/test.log", "where to write go test's output")
	seconds := flag.Int("seconds", 0, "time the tests took, in seconds")
	coverage := flag.String("coverage", "", "the merged coverage figure (hack/cover.sh's total)")
	gate := flag.String("min", "97.0", "the coverage gate, percent")
	flag.Parse()
	if err := run(*jsonFile, *logFile, time.Duration(*seconds)*time.Second, *coverage, *gate); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
}

func run(jsonFile, logFile string, took time.Duration, coverage, gate string) error {
	in, err := os.Open(jsonFile)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(logFile)
	if err != nil {
		return err
	}
	t, err := read(in, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Println("==> test summary")
	fmt.Printf("packages: %d, %d failed\n", len(t.packages), len(t.failedPkgs))
	fmt.Printf("tests:    %d, %d skipped, %d failed\n", t.tests, t.skipped, t.failed)
	if os.Getenv("CI") != "" && t.skipped > 0 {
		slices.Sort(t.skippedNames)
		fmt.Printf("skipped (CI is set, so none should need a missing service): %v\n", t.skippedNames)
	}
	if coverage == "" {
		coverage = "none (no coverage profile)"
	}
	fmt.Printf("coverage: %s of the library's statements, merged over every package's tests (the gate: %s%%, make cover)\n", coverage, gate)
	fmt.Printf("time:     %s\n", took)
	return nil
}
