// Command lockctl is the command line of lockcoord: it takes, inspects and
// releases leases on Redis, runs a command while holding a lease, runs the
// demo, and operates the Postgres audit mirror. Run lockctl --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// the first SIGINT or SIGTERM cancels the command's context (run
	// forwards the signals to its command instead); a second one kills
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore the default action for the next signal
	}()
	code := newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv).execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
