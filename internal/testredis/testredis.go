// Package testredis starts throwaway redis-server (and redis-sentinel)
// processes on free loopback ports for tests, so that tests never touch a
// developer's Redis and may flush, restart, freeze or kill their own. It
// is the one process type of the test helpers: internal/testcluster
// builds its Cluster and Sentinel groups from its Servers.
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

// ErrNotInstalled reports that a binary of the Redis distribution
// (redis-server, redis-cli, redis-sentinel) is not on PATH.
var ErrNotInstalled = errors.New("testredis: redis binaries not installed")

// startTimeout bounds how long Restart waits for a server to answer.
const startTimeout = 15 * time.Second

// Server is a redis-server (or redis-sentinel) child process on a loopback
// port, with a folder of its own (its log, nodes.conf, sentinel.conf).
type Server struct {
	// Addr is host:port of the server.
	Addr string
	// Port is the port of Addr.
	Port int

	dir  string
	args []string // binary, then arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server on a free loopback port with the extra
// config args ("--appendonly", "yes", ...) and stops it when t ends. It
// skips t when redis-server is not installed, or fails it under CI.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := LookPath("redis-server")
	if err != nil {
		testutil.Unavailable(t, "%v (run make test, which installs it)", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	s, err := New(t.TempDir(), port, append(ServerArgs(bin, port), args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// ServerArgs are the command line of a redis-server of bin on port:
// loopback only, no persistence, its folder as working directory.
func ServerArgs(bin string, port int) []string {
	return []string{bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--dir", "."}
}

// LookPath finds a binary of the Redis distribution; a missing one gives
// ErrNotInstalled.
func LookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNotInstalled, name, err)
	}
	return p, nil
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

// New prepares (does not start) a server on port with dir as its folder,
// made if missing; args are the binary and its arguments.
func New(dir string, port int, args ...string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testredis: %w", err)
	}
	return &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, dir: dir, args: args}, nil
}

// Dir returns the server's folder.
func (s *Server) Dir() string { return s.dir }

// Restart starts the server again (after Kill) with the same port and
// configuration and waits until it answers PING.
func (s *Server) Restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return s.Start(ctx)
}

// Start starts the process, with extra arguments for this start only
// (after Kill: "--replicaof", host, port), and waits until it answers
// PING or ctx ends.
func (s *Server) Start(ctx context.Context, extra ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("testredis: %s is running", s.Addr)
	}
	cmd := exec.Command(s.args[0], append(append([]string{}, s.args[1:]...), extra...)...)
	cmd.Dir = s.dir
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testredis: %w", err)
	}
	defer func() { _ = logf.Close() }()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testredis: start %s: %w", s.Addr, err)
	}
	s.cmd = cmd
	if err := s.waitPing(ctx); err != nil {
		s.killLocked()
		return fmt.Errorf("testredis: %s did not answer: %w (log: %s)", s.Addr, err, tail(logf.Name()))
	}
	return nil
}

// waitPing waits until the server accepts a connection, then until it
// answers PING (a server loading its data refuses commands a while).
func (s *Server) waitPing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var d net.Dialer
	// dial first: a client dialling a closed port logs every failure
	err := testutil.Poll(ctx, 10*time.Millisecond, func() error {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", s.Addr)
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
	if err != nil {
		return err
	}
	c := s.direct()
	defer func() { _ = c.Close() }()
	return testutil.Poll(ctx, 10*time.Millisecond, func() error {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		return c.Ping(pctx).Err()
	})
}

// Kill stops the server with SIGKILL (what it did not persist is lost)
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

// Freeze stops the process (SIGSTOP): it keeps its connections open but
// answers nothing until Thaw. Only on Unix.
func (s *Server) Freeze() error { return s.signal(freezeSignals[0]) }

// Thaw lets a frozen process run again (SIGCONT).
func (s *Server) Thaw() error { return s.signal(freezeSignals[1]) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig == nil {
		return errors.New("testredis: freezing a process needs Unix")
	}
	if s.cmd == nil {
		return fmt.Errorf("testredis: %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testredis: signal %s: %w", s.Addr, err)
	}
	return nil
}

// Running reports whether the server process runs (between Start and
// Kill).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Client returns a client of the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// direct returns a short-lived client of the server without retries, for
// one administrative command: faults of a proxy in front of the server do
// not apply. The caller closes it.
func (s *Server) direct() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, PoolSize: 1})
}

// Do runs one command on the server with a short-lived direct client.
func (s *Server) Do(ctx context.Context, args ...any) (any, error) {
	c := s.direct()
	defer func() { _ = c.Close() }()
	return c.Do(ctx, args...).Result()
}

// Info returns the fields of INFO section on the server.
func (s *Server) Info(ctx context.Context, section string) (map[string]string, error) {
	v, err := s.Do(ctx, "INFO", section)
	if err != nil {
		return nil, err
	}
	text, _ := v.(string)
	return ParseInfo(text), nil
}

// ParseInfo reads the "field:value" lines of an INFO reply.
func ParseInfo(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSuffix(v, "\r")
		}
	}
	return m
}

// tail returns the last lines of the log at path.
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
		if len(lines) > 8 {
			lines = lines[1:]
		}
	}
	return fmt.Sprint(lines)
}
