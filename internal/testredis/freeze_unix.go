//go:build unix

package testredis

import (
	"os"
	"syscall"
)

// freezeSignals are the signals of Freeze and Thaw.
var freezeSignals = [2]os.Signal{syscall.SIGSTOP, syscall.SIGCONT}
