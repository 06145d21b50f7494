//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

// onTerminal is lockctl (the test binary as helper "lockctl") run on a
// pseudo-terminal of its own, as from an interactive shell: a session
// leader whose process group is the terminal's foreground.
type onTerminal struct {
	t      *testing.T
	cmd    *exec.Cmd
	tty    *os.File // the terminal's master side
	out    lockedBuffer
	read   sync.WaitGroup
	exited chan error
}

func startOnTerminal(t *testing.T, url string, args ...string) *onTerminal {
	t.Helper()
	argv := helperCommand(t, "lockctl", append([]string{"--redis-url", url}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOCKCOORD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	o := &onTerminal{t: t, cmd: cmd, tty: tty, exited: make(chan error, 1)}
	o.read.Go(func() { _, _ = io.Copy(&o.out, tty) }) // ends when the terminal closes
	go func() { o.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-o.exited
		}
		_ = tty.Close()
		o.read.Wait()
	})
	return o
}

// waitOutput waits until the terminal has shown a match of re. (The
// command's text is in lockctl's log: the command prints what it does
// not spell.)
func (o *onTerminal) waitOutput(re string) {
	o.t.Helper()
	rx := regexp.MustCompile(re)
	testutil.Eventually(o.t, 10*time.Second, "the terminal to show "+re, func() bool { return rx.MatchString(o.out.String()) })
}

// write types s on the terminal.
func (o *onTerminal) write(s string) {
	o.t.Helper()
	if _, err := o.tty.Write([]byte(s)); err != nil {
		o.t.Fatal(err)
	}
}

// exit waits for lockctl to exit and returns its status; a lockctl still
// running after 30 s fails the test (run hangs).
func (o *onTerminal) exit() int {
	o.t.Helper()
	select {
	case err := <-o.exited:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			o.t.Fatal(err)
		}
		return o.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		_ = o.cmd.Process.Kill()
		err := <-o.exited
		o.t.Fatalf("lockctl did not exit (%v); the terminal showed:\n%s", err, o.out.String())
		return -1
	}
}

// TestRunOnATerminal: run's command uses the terminal as it would without
// lockctl. It reads it; Ctrl-C reaches it once (the terminal sends it to
// the command, lockctl does not forward it again); SIGTERM to lockctl
// ends it. Each time the lease is released.
func TestRunOnATerminal(t *testing.T) {
	mr, url := newMiniredis(t)
	s := storeOn(t, mr)
	released := func(id string) {
		t.Helper()
		if mr.Exists(s.Layout().LeaseKey(coordinator.Plan(id))) {
			t.Fatalf("plan/%s is still held", id)
		}
	}
	t.Run("reads the terminal", func(t *testing.T) {
		o := startOnTerminal(t, url, "run", "plan/706", "--", "sh", "-c", `read x; echo "got $x"`)
		o.write("hello\n")
		o.waitOutput("got hello")
		if code := o.exit(); code != ExitOK {
			t.Fatalf("exit status %d; the terminal showed:\n%s", code, o.out.String())
		}
		released("706")
	})
	t.Run("Ctrl-C reaches the command once", func(t *testing.T) {
		o := startOnTerminal(t, url, "--log-level", "debug", "--log-format", "json", "run", "plan/707", "--", "sh", "-c",
			`n=0; trap 'n=$((n+1))' INT; echo "trap $((6*7))"; while [ "$x" != go ]; do read x; done; echo "SIGINT $n $((6*7))"`)
		// (a Ctrl-C while lockctl starts the command is passed on once
		// the command runs: it may reach it twice, never not at all)
		o.waitOutput(`"message":"command started"`)
		o.waitOutput("trap 42")
		o.write("\x03")
		o.waitOutput(`"signal":"SIGINT"`) // lockctl has handled its own SIGINT
		o.write("go\n")
		o.waitOutput(`SIGINT \d+ 42`)
		if !strings.Contains(o.out.String(), "SIGINT 1 42") {
			t.Fatalf("the terminal showed:\n%s", o.out.String())
		}
		if code := o.exit(); code != ExitOK {
			t.Fatalf("exit status %d; the terminal showed:\n%s", code, o.out.String())
		}
		released("707")
	})
	t.Run("SIGTERM ends the command", func(t *testing.T) {
		o := startOnTerminal(t, url, "run", "plan/708", "--", "sh", "-c", `echo ready; read x`)
		o.waitOutput("ready")
		if err := o.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := o.exit(); code != 128+int(syscall.SIGTERM) {
			t.Fatalf("exit status %d; the terminal showed:\n%s", code, o.out.String())
		}
		released("708")
	})
}
