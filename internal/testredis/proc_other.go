//go:build !linux

package testcluster

import "syscall"

// procAttr has nothing to add outside Linux.
func procAttr() *syscall.SysProcAttr { return nil }
