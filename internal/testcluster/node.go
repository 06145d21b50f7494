package testcluster

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
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotInstalled reports that redis-server or redis-cli is not on PATH.
var ErrNotInstalled = errors.New("testcluster: redis binaries not installed")

// Node is one redis-server (or Sentinel) child process on a loopback port.
type Node struct {
	// Addr is host:port of the node.
	Addr string
	// Port is the port of Addr.
	Port int

	dir  string
	args []string // binary, then arguments

	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool // SIGSTOP sent and not resumed
}

// lookPath finds a binary of the Redis distribution.
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNotInstalled, name, err)
	}
	return p, nil
}

// freePort returns a loopback TCP port nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newNode prepares (does not start) a node on port in a folder of its own
// under dir; args are the binary and its arguments.
func newNode(dir, name string, port int, args ...string) (*Node, error) {
	nd := filepath.Join(dir, name)
	if err := os.MkdirAll(nd, 0o755); err != nil {
		return nil, err
	}
	n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, dir: nd, args: args}
	return n, nil
}

// Dir returns the node's working folder (its logs, nodes.conf, sentinel.conf).
func (n *Node) Dir() string { return n.dir }

// Start starts the process and waits until it answers PING.
func (n *Node) Start(ctx context.Context) error {
	return n.StartWith(ctx)
}

// StartWith starts the process with extra arguments for this start only
// (after Kill: "--replicaof", host, port) and waits until it answers PING.
func (n *Node) StartWith(ctx context.Context, extra ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("testcluster: %s is running", n.Addr)
	}
	args := append(append([]string{}, n.args[1:]...), extra...)
	cmd := exec.Command(n.args[0], args...)
	cmd.Dir = n.dir
	logf, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testcluster: start %s: %w", n.Addr, err)
	}
	n.cmd, n.stopped = cmd, false
	if err := n.waitPing(ctx); err != nil {
		n.killLocked()
		return fmt.Errorf("testcluster: %s did not answer: %w (log: %s)", n.Addr, err, tail(logf.Name()))
	}
	return nil
}

func (n *Node) waitPing(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	var d net.Dialer
	for {
		// dial first: a client dialling a closed port logs every failure
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		conn, err := d.DialContext(dctx, "tcp", n.Addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, PoolSize: 1})
	defer func() { _ = c.Close() }()
	for {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the process with SIGKILL (what it did not persist is lost)
// and waits for it to exit. Killing a stopped node does nothing.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.killLocked()
}

func (n *Node) killLocked() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd, n.stopped = nil, false
}

// Pause freezes the process (SIGSTOP): it keeps its connections open but
// answers nothing until Resume.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume lets a paused process run again (SIGCONT).
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, stopped bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("testcluster: %s is not running", n.Addr)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testcluster: signal %s: %w", n.Addr, err)
	}
	n.stopped = stopped
	return nil
}

// Running reports whether the process runs (between Start and Kill).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Client returns a new direct client of the node, without retries; the
// caller closes it.
func (n *Node) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
}

// Do runs one command on the node with a short-lived direct client.
func (n *Node) Do(ctx context.Context, args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, PoolSize: 1})
	defer func() { _ = c.Close() }()
	return c.Do(ctx, args...).Result()
}

// info returns the fields of INFO section on the node.
func (n *Node) info(ctx context.Context, section string) (map[string]string, error) {
	v, err := n.Do(ctx, "INFO", section)
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	return parseInfo(s), nil
}

func parseInfo(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		for i := 0; i < len(line); i++ {
			if line[i] == ':' {
				m[line[:i]] = trimCR(line[i+1:])
				break
			}
		}
	}
	return m
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
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
		if len(lines) > 8 {
			lines = lines[1:]
		}
	}
	return fmt.Sprint(lines)
}
