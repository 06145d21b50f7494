//go:build unix && !linux && !freebsd

package main

import "syscall"

// childAttr is how run starts its command. The command leads a process
// group of its own, unless it shares lockctl's terminal (then it stays in
// lockctl's group, the terminal's job). This system has no parent-death
// signal: the command can outlive a lockctl killed by kill -9, and only
// the fencing token guards the resource from it.
func childAttr(terminal bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: !terminal}
}
