package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
)

// defaultGrace is how long run's command has to exit after SIGTERM when
// the lease is lost, before SIGKILL.
const defaultGrace = 5 * time.Second

// forwardedSignals are passed on to run's command; the first four also
// abort the wait for the lease before the command started.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2}

// signalName is the SIGxxx name of one of the forwarded signals.
func signalName(s os.Signal) string {
	names := map[os.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP",
		syscall.SIGQUIT: "SIGQUIT", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2"}
	if n, ok := names[s]; ok {
		return n
	}
	return s.String()
}

func terminating(s os.Signal) bool {
	switch s {
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
		return true
	}
	return false
}

type runFlags struct {
	owner string
	ttl   time.Duration
	wait  time.Duration
	grace time.Duration
}

func (a *app) runCmd() *cobra.Command {
	rf := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run RESOURCE [--owner O] [--ttl D] [--wait D] [--grace D] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lease, renewing it",
		Long: `run takes the lease on RESOURCE (waiting up to --wait for its holder), runs
COMMAND while a keep-alive renews the lease every third of --ttl, and
releases the lease when the command ends. The command's environment has
LOCKCOORD_TOKEN (the fencing token: pass it with every write to the
protected resource), LOCKCOORD_RESOURCE and LOCKCOORD_OWNER.

The command runs in a process group of its own. SIGINT, SIGTERM, SIGHUP,
SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockctl are forwarded to that group
(before the command started, the first four abort the wait). The command
cannot read from the terminal.

If the lease is lost (Redis says it is gone or held by another, or no
renewal succeeded before its expiry minus a safety margin), the command
gets SIGTERM, then SIGKILL after --grace, and run exits with status 5.
After the command ends, run checks that the lease still carries its
token before releasing it: if the lease was lost at any moment — also when
the command had already finished, or lockctl itself was frozen — the exit
status is 5, never 0.

--owner defaults to <hostname>:lockctl-run:<pid>; --ttl to the resource
type's TTL (plan 5m, project 10m, others 1m).

Exit status: the command's (128+N when it was killed by signal N); 5 the
lease was lost; 3 the resource is held by another owner (after --wait);
126 the command could not be executed; 127 not found; 128+N interrupted
by signal N while waiting; 2 bad input; 4 Redis unreachable.`,
		Example: `  lockctl run plan/42 -- ./rebuild-plan.sh 42
  lockctl run project/alpha --owner "$HOSTNAME" --ttl 30s --wait 5m -- make deploy
  lockctl run job/nightly --grace 30s -- sh -c 'backup --fence "$LOCKCOORD_TOKEN"'`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			switch {
			case dash == 0 || len(args) == 0:
				return usagef("run needs RESOURCE before -- (see lockctl run --help)")
			case dash > 1:
				return usagef("run takes one RESOURCE before --, got %q (see lockctl run --help)", args[:dash])
			case len(args) < 2:
				return usagef("run needs a COMMAND after the resource: lockctl run %s -- COMMAND [ARGS...]", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseResource(args[0])
			if err != nil {
				return err
			}
			if rf.owner == "" {
				rf.owner = defaultRunOwner()
			}
			lf := &leaseFlags{owner: rf.owner, ttl: rf.ttl, wait: rf.wait}
			if err := lf.check(cmd, true); err != nil {
				return err
			}
			if rf.grace <= 0 {
				return usagef("bad --grace %s: must be positive", rf.grace)
			}
			return a.runLeased(cmd.Context(), r, rf.owner, lf.ttlFor(r), rf.wait, rf.grace, args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&rf.owner, "owner", "", "owner of the lease (default <hostname>:lockctl-run:<pid>)")
	f.DurationVar(&rf.ttl, "ttl", 0, "lease TTL, renewed every third of it (default: the resource type's)")
	f.DurationVar(&rf.wait, "wait", 0, "wait up to this long for the holder's release")
	f.DurationVar(&rf.grace, "grace", defaultGrace, "time between SIGTERM and SIGKILL when the lease is lost")
	return cmd
}

func defaultRunOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + ":lockctl-run:" + strconv.Itoa(os.Getpid())
}

// supervisor passes signals to the command once it runs, and aborts the
// wait for the lease before.
type supervisor struct {
	mu      sync.Mutex
	started bool        // the command is being started or runs: no more aborts
	pid     int         // the command's process (group), 0 when none
	pending []os.Signal // received while the command was being started
	aborted os.Signal   // the signal that aborted the wait
	abort   context.CancelCauseFunc
	log     func(s os.Signal, pid int)
}

var errInterrupted = errors.New("interrupted")

func (s *supervisor) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.pid != 0:
		s.log(sig, s.pid)
		_ = syscall.Kill(-s.pid, sig.(syscall.Signal))
	case s.started:
		s.pending = append(s.pending, sig)
	case terminating(sig) && s.aborted == nil:
		s.aborted = sig
		s.abort(errInterrupted)
	}
}

// interrupt aborts the wait for the lease as sig would, but is not
// forwarded to a running command.
func (s *supervisor) interrupt(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && s.aborted == nil {
		s.aborted = sig
		s.abort(errInterrupted)
	}
}

// abortedBy returns the signal that aborted the wait, nil if none did.
func (s *supervisor) abortedBy() os.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

// begin marks the command as starting; false when the wait was aborted.
func (s *supervisor) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted != nil {
		return false
	}
	s.started = true
	return true
}

// running records the command's pid and delivers the signals that came
// while it was started.
func (s *supervisor) running(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pid = pid
	for _, sig := range s.pending {
		s.log(sig, pid)
		_ = syscall.Kill(-pid, sig.(syscall.Signal))
	}
	s.pending = nil
}

func (s *supervisor) exited() {
	s.mu.Lock()
	s.pid = 0
	s.mu.Unlock()
}

// runLeased runs argv under the lease on r.
func (a *app) runLeased(ctx context.Context, r coordinator.Resource, owner string, ttl, wait, grace time.Duration, argv []string) error {
	sigs := a.sigs
	if sigs == nil {
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, forwardedSignals...)
		defer signal.Stop(ch)
		sigs = ch
	}
	// the lease's context ends only by a signal before the command started:
	// once it runs, signals go to the command and the lease is kept until
	// it exits
	hctx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	sup := &supervisor{abort: abort, log: func(s os.Signal, pid int) {
		a.log.Info().Str("signal", signalName(s)).Int("pid", pid).Msg("forwarding signal to the command")
	}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := ctx.Done()
		for {
			select {
			case <-stop:
				return
			case s := <-sigs:
				sup.signal(s)
			case <-done: // the caller's context ended: abort a wait, like SIGTERM
				done = nil
				sup.interrupt(syscall.SIGTERM)
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	cctx, cancel := a.opContext(ctx)
	rc, err := a.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	c := coordinator.New(rc.store, coordinator.WithLogger(a.log))
	defer func() {
		cctx, cancel := a.opContext(context.WithoutCancel(ctx))
		defer cancel()
		_ = c.Close(cctx)
	}()

	var (
		status   = -1   // the command's exit status, -1 when it did not run
		ending   string // how the command ended, for the lease-lost message
		startErr error  // the command could not be started
		token    uint64 // the lease's fencing token
	)
	err = c.Hold(hctx, r, owner, func(lctx context.Context, l coordinator.Lease) error {
		token = l.Token
		if !sup.begin() {
			return context.Cause(hctx)
		}
		a.log.Info().Str("resource", r.String()).Str("owner", owner).Uint64("token", l.Token).
			Strs("command", argv).Msg("lease held, starting the command")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "LOCKCOORD_TOKEN="+strconv.FormatUint(l.Token, 10),
			"LOCKCOORD_RESOURCE="+r.String(), "LOCKCOORD_OWNER="+owner)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = time.Second // for pipes held open by orphans
		if err := cmd.Start(); err != nil {
			startErr = err
			return err
		}
		sup.running(cmd.Process.Pid)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()

		var lost bool
		var waitErr error // the exit status is read from cmd.ProcessState below
		select {
		case waitErr = <-waited:
		case <-lctx.Done():
			lost = true
			pid := cmd.Process.Pid
			a.log.Error().Err(context.Cause(lctx)).Int("pid", pid).Msg("lease lost, terminating the command")
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			ending = "the command was terminated with SIGTERM"
			t := time.NewTimer(grace)
			select {
			case waitErr = <-waited:
			case <-t.C:
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				ending = fmt.Sprintf("the command did not exit within --grace %s of SIGTERM and was killed", grace)
				waitErr = <-waited
			}
			t.Stop()
		}
		a.log.Debug().AnErr("wait", waitErr).Msg("command ended")
		sup.exited()
		status = exitStatus(cmd.ProcessState)
		if lost {
			return nil // Hold joins the loss
		}
		ending = fmt.Sprintf("the command exited with status %d", status)
		// the keep-alive may not have noticed a loss (the command ended
		// before its next renewal, or lockctl was frozen): check the lease
		// before Hold releases it
		vctx, cancel := a.opContext(context.WithoutCancel(ctx))
		defer cancel()
		cur, err := c.Inspect(vctx, r)
		switch {
		case errors.Is(err, coordinator.ErrNotHeld):
			return &coordinator.LostError{Resource: r, Owner: owner, Token: l.Token,
				Reason: fmt.Errorf("%w: the lease was gone when the command ended", coordinator.ErrExpired)}
		case err != nil:
			return fmt.Errorf("check the lease on %s after the command (exit status %d): %w", r, status, err)
		case cur.Owner != owner || cur.Token != l.Token:
			return &coordinator.LostError{Resource: r, Owner: owner, Token: l.Token,
				Reason: fmt.Errorf("%w: when the command ended the lease was %q's with token %d",
					coordinator.ErrNotHeld, cur.Owner, cur.Token)}
		}
		return nil
	}, coordinator.TTL(ttl), coordinator.Wait(wait))

	switch {
	case errors.Is(err, coordinator.ErrLeaseLost):
		var le *coordinator.LostError
		if errors.As(err, &le) { // the first loss found, not every report of it
			err = le
		}
		return exitWith(ExitLeaseLost, fmt.Errorf("%w; %s", err, ending))
	case startErr != nil:
		code := ExitCannotExec
		if errors.Is(startErr, exec.ErrNotFound) || errors.Is(startErr, fs.ErrNotExist) {
			code = ExitNotFound
		}
		return exitWith(code, fmt.Errorf("cannot run %q: %w", argv[0], startErr))
	case sup.abortedBy() != nil && status < 0:
		sig := sup.abortedBy()
		return exitWith(128+int(sig.(syscall.Signal)), fmt.Errorf("interrupted by %s while waiting for the lease on %s", signalName(sig), r))
	case err != nil && status >= 0:
		// the command ran; checking or releasing the lease failed
		return fmt.Errorf("the command exited with status %d, then: %w", status, err)
	case err != nil:
		return err
	}
	a.log.Info().Str("resource", r.String()).Uint64("token", token).Int("status", status).Msg("command ended, lease released")
	if status != 0 {
		return exitWith(status, nil)
	}
	return nil
}

// exitStatus is a process's exit status in the shell's convention:
// 128+N when signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
