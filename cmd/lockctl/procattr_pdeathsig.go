//go:build linux || freebsd

package main

import "syscall"

// childAttr is how run starts its command. The command leads a process
// group of its own, unless it shares lockctl's terminal (then it stays in
// lockctl's group, the terminal's job). It gets SIGKILL when lockctl dies,
// even by kill -9: it must not work on without the lease.
func childAttr(terminal bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: !terminal, Pdeathsig: syscall.SIGKILL}
}
