package testredis

import "syscall"

// procAttr makes the kernel kill a server when the test binary dies, so
// that a test killed by its timeout leaves no process behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
