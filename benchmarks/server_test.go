package benchmarks_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// required reports whether a missing service must fail a benchmark
// instead of skipping it: under CI=true it must.
func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("LOCKCOORD_REQUIRE_SERVICES") == "1"
}

// redisServer is a throwaway redis-server child process on a free
// loopback port (a minimal copy of lockcoord's internal/testredis, which
// this module cannot import).
type redisServer struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
}

var (
	sharedMu  sync.Mutex
	sharedSrv *redisServer
	sharedErr error
)

// server returns the redis-server shared by the benchmarks of this test
// binary, starting it on first use; TestMain stops it. It skips b when
// redis-server is not installed (fails it under CI).
func server(tb testing.TB) *redisServer {
	tb.Helper()
	srv, err := startRedisOnce()
	if err != nil {
		if required() {
			tb.Fatalf("redis-server: %v", err)
		}
		tb.Skipf("redis-server: %v", err)
	}
	return srv
}

func stopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedSrv != nil {
		sharedSrv.stop()
		sharedSrv = nil
	}
}

func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lockcoord-bench-redis-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &redisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// no persistence: the benchmarks measure the lock, not the disk
	s.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not answer: %w", s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *redisServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	_ = os.RemoveAll(s.dir)
}
