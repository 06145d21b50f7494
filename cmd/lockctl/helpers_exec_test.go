package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// helperCommand returns the argv that runs the test binary as helper
// name: a child process without a shell, whose every step is known.
func helperCommand(t *testing.T, name string, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"env", helperEnv + "=" + name, exe}, args...)
}

// runHelper runs helper name with args and returns its exit status.
func runHelper(name string, args []string) int {
	switch name {
	case "signals":
		return signalsHelper(args[0])
	case "lockctl":
		os.Args = append([]string{"lockctl"}, args...)
		main()
	}
	fmt.Fprintf(os.Stderr, "no helper %q\n", name)
	return 2
}

// signalsHelper prints "got HUP" for each SIGHUP, then creates the file
// marker+".hup"; on SIGTERM it prints "got TERM" and exits 43. It creates
// marker once it listens. (43 is no status of lockctl's own, so run
// passes it through.)
func signalsHelper(marker string) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return 1
	}
	for s := range sigs {
		if s == syscall.SIGTERM {
			fmt.Println("got TERM")
			return 43
		}
		fmt.Println("got HUP")
		if err := os.WriteFile(marker+".hup", nil, 0o600); err != nil {
			return 1
		}
	}
	return 1
}
