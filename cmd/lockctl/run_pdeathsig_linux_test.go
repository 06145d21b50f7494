package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

// TestRunCommandDiesWithLockctl: kill -9 of lockctl kills run's command
// (Linux: a parent-death signal), which must not work on without the
// lease while another owner takes it.
func TestRunCommandDiesWithLockctl(t *testing.T) {
	_, url := newMiniredis(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	argv := helperCommand(t, "lockctl", "--redis-url", url, "run", "plan/orphan", "--",
		"sh", "-c", `echo $$ > `+pidFile+`; exec sleep 300`)
	lockctl := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOCKCOORD_") {
			lockctl.Env = append(lockctl.Env, kv)
		}
	}
	if err := lockctl.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	t.Cleanup(func() {
		_ = lockctl.Process.Kill()
		_ = lockctl.Wait()
		if pid != 0 && procState(pid) != "" {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testutil.Eventually(t, 10*time.Second, "the command's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	testutil.Eventually(t, 10*time.Second, "the command to run sleep", func() bool {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return err == nil && strings.TrimSpace(string(comm)) == "sleep"
	})
	if err := lockctl.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = lockctl.Wait()
	// gone, or a zombie its new parent has not reaped: dead either way
	testutil.Eventually(t, 10*time.Second, "the command to die with lockctl", func() bool { s := procState(pid); return s == "" || s == "Z" })
}
