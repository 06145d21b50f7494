package testpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// Server is a throwaway Postgres cluster of a test's own (initdb, then
// pg_ctl on a free loopback port), which the test may stop and start
// again: the shared server of the other tests is never touched.
type Server struct {
	// URL is the connection URL of its postgres database.
	URL  string
	dir  string
	data string
	port int
	bin  string   // folder of initdb and pg_ctl
	run  []string // prefix of every command: runuser -u postgres -- when root

	mu      sync.Mutex
	running bool
}

// StartServer creates a Postgres cluster in a temporary folder, starts
// it, and stops and removes it when t ends. Without initdb it skips t, or
// fails it when testutil.Required. initdb refuses to run as root: as
// root, the cluster's files belong to the postgres user and its commands
// run through runuser.
func StartServer(t testing.TB) *Server {
	t.Helper()
	initdb, err := lookInitdb()
	if err != nil {
		testutil.Unavailable(t, "initdb not found: %v", err)
	}
	s := &Server{bin: filepath.Dir(initdb)}
	if s.port, err = testredis.FreePort(); err != nil {
		t.Fatal(err)
	}
	if s.dir, err = os.MkdirTemp("", "lockcoord-pg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.dir) })
	s.data = filepath.Join(s.dir, "data")
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		s.asPostgres(t)
	}
	if out, err := s.cmd(initdb, "-D", s.data, "-U", "postgres", "--auth=trust", "-N").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(true) })
	return s
}

// lookInitdb finds initdb on PATH, else in Debian's versioned folders.
func lookInitdb() (string, error) {
	p, err := exec.LookPath("initdb")
	if err == nil {
		return p, nil
	}
	if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(found) > 0 {
		return found[len(found)-1], nil
	}
	return "", err
}

// asPostgres gives the cluster's folders to the postgres user and runs
// its commands as that user.
func (s *Server) asPostgres(t testing.TB) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		testutil.Unavailable(t, "running as root without a postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{s.dir, s.data} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s.run = []string{"runuser", "-u", "postgres", "--"}
}

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	all := append(append(append([]string(nil), s.run...), name), args...)
	return exec.Command(all[0], all[1:]...)
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("testpg: server is running")
	}
	out, err := s.cmd(filepath.Join(s.bin, "pg_ctl"), "-D", s.data, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.port, s.dir), "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("testpg: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	s.running = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = testutil.Poll(ctx, 20*time.Millisecond, func() error {
		c, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		return fmt.Errorf("testpg: server does not answer: %w", err)
	}
	return nil
}

// Stop stops the server: immediate is a crash (no checkpoint, recovery
// at the next start), otherwise a fast shutdown (sessions cut, then a
// checkpoint). Stopping a stopped server does nothing.
func (s *Server) Stop(immediate bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	out, err := s.cmd(filepath.Join(s.bin, "pg_ctl"), "-D", s.data, "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testpg: pg_ctl stop: %w\n%s", err, out)
	}
	s.running = false
	return nil
}
