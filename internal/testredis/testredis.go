// Package testredis starts throwaway redis-server processes on free
// loopback ports for tests, so that tests never touch a developer's Redis
// and may flush, restart or kill their own.
package testredis

import (
	"bufio"
	"context"
	"errors"
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

// Server is a redis-server child process.
type Server struct {
	Addr string
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Required reports whether a missing redis-server must fail the test
// rather than skip it: under CI=true it must.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("LOCKCOORD_REQUIRE_SERVICES") == "1"
}

// Start starts a redis-server on a free loopback port with the extra
// config args ("--appendonly", "yes", ...) and stops it when t ends. It
// skips t when redis-server is not installed, or fails it under CI.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if Required() {
			t.Fatalf("redis-server not found (run make test, which installs it): %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	s := &Server{dir: t.TempDir()}
	port, err := FreePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	s.args = append([]string{bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--protected-mode", "no"}, args...)
	if err := s.Restart(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

// FreePort returns a loopback TCP port nobody listens on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server again (after Kill) with the same port and
// configuration and waits until it answers PING.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("testredis: server is running")
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	logf, err := os.Create(filepath.Join(s.dir, "redis-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".log"))
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("testredis: %s did not answer: %w (log: %s)", s.Addr, err, tail(logf.Name()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL (its data is lost unless persisted)
// and waits for it to exit. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Client returns a client of the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return fmt.Sprint(lines)
}
