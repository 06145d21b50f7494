package main

import (
	"os"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

// helperEnv names the helper the test binary runs instead of the tests,
// when a test starts it as a child process (see helperCommand).
const helperEnv = "LOCKCTL_TEST_HELPER"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name, os.Args[1:]))
	}
	testutil.VerifyTestMain(m)
}
