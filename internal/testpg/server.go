package pgdb

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
	bin  string
	run  []string // prefix of every command: runuser -u postgres -- when root

	mu      sync.Mutex
	running bool
}

// StartServer creates a Postgres cluster in a temporary folder, starts
// it, and stops and removes it when t ends. It skips t when initdb is not
// installed (fails it under CI, as testredis does). initdb refuses to run
// as root: as root, the cluster's files belong to the postgres user and
// its commands run through runuser.
func StartServer(t testing.TB) *Server {
	t.Helper()
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		if testredis.Required() {
			t.Fatalf("initdb not found: %v", err)
		}
		t.Skipf("initdb not found: %v", err)
	}
	s := &Server{bin: filepath.Dir(initdb)}
	port, err := testredis.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.port = port
	s.dir, err = os.MkdirTemp("", "lockcoord-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.dir) })
	s.data = filepath.Join(s.dir, "data")
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(s.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(s.data, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.run = []string{"runuser", "-u", "postgres", "--"}
	}
	if out, err := s.cmd(initdb, "-D", s.data, "-U", "postgres", "--auth=trust", "-N").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(true) })
	return s
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
		return errors.New("pgdb: server is running")
	}
	out, err := s.cmd(filepath.Join(s.bin, "pg_ctl"), "-D", s.data, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.port, s.dir), "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pgdb: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	s.running = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.URL)
		if err == nil {
			return c.Close(ctx)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pgdb: server does not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		return fmt.Errorf("pgdb: pg_ctl stop: %w\n%s", err, out)
	}
	s.running = false
	return nil
}
