package benchmarks_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain stops the shared redis-server and checks for leaked goroutines;
// started by BenchmarkFailover as a candidate, it runs the candidate.
// When benchmarks run it first prints configuration lines (benchfmt
// "key: value") that cmd/benchtable puts in the report's header; they stay
// the same for every go test run of one machine and day, so that
// benchstat keeps the runs of one suite in one table (run.sh records the
// load separately).
func TestMain(m *testing.M) {
	if spec := os.Getenv(candidateEnv); spec != "" {
		os.Exit(runCandidate(spec)) // a candidate of BenchmarkFailover
	}
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		printConfig()
	}
	code := m.Run()
	stopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func printConfig() {
	fmt.Printf("nproc: %d\n", runtime.NumCPU())
	fmt.Printf("gomaxprocs: %d\n", runtime.GOMAXPROCS(0))
	fmt.Printf("go-version: %s\n", runtime.Version())
	if m := cpuModel(); m != "" {
		fmt.Printf("cpu-model: %s\n", m)
	}
	fmt.Printf("date: %s\n", time.Now().UTC().Format("2006-01-02"))
	// the version of the redis-server the benchmarks start
	srv, err := startRedisOnce()
	if err != nil {
		return
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	info, err := c.InfoMap(context.Background(), "server").Result()
	if err == nil {
		fmt.Printf("redis-version: %s\n", info["Server"]["redis_version"])
	}
}

func startRedisOnce() (*redisServer, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedSrv == nil && sharedErr == nil {
		sharedSrv, sharedErr = startRedis()
	}
	return sharedSrv, sharedErr
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
