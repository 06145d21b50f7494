package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

// procState is the state letter of process pid in /proc (T: stopped),
// "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) S ...: comm may hold spaces, the state follows the last ')'
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// TestRunEndsAStoppedCommand: SIGTERM ends the run also when the command
// is stopped (Ctrl-Z, or a read from the terminal in the background): the
// signal is followed by SIGCONT.
func TestRunEndsAStoppedCommand(t *testing.T) {
	_, url := newMiniredis(t)
	c := newCLI(t, url)
	c.sigs = make(chan os.Signal, 1)
	pidFile := filepath.Join(t.TempDir(), "pid")
	done := make(chan result, 1)
	go func() {
		done <- c.run("run", "plan/stopped", "--", "sh", "-c", `echo $$ > `+pidFile+`; kill -STOP $$; echo continued`)
	}()
	var pid int
	testutil.Eventually(t, 10*time.Second, "the command's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	testutil.Eventually(t, 10*time.Second, "the command to stop", func() bool { return procState(pid) == "T" })
	c.sigs <- syscall.SIGTERM
	select {
	case r := <-done:
		r.want(t, 128+int(syscall.SIGTERM))
		if r.stdout != "" {
			t.Fatalf("the command went on: %q", r.stdout)
		}
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-done
		t.Fatal("run did not end after SIGTERM: the stopped command never got it")
	}
}
