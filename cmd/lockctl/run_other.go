//go:build !unix

package main

import "context"

// runLeased refuses: run supervises its command with Unix process groups
// and signals.
func (a *app) runLeased(context.Context, runSpec) error {
	return usagef("lockctl run is Unix-only (this is not a Unix system); acquire, renew and release work everywhere")
}
