//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

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

// terminating reports whether s asks a process to end.
func terminating(s os.Signal) bool {
	switch s {
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
		return true
	}
	return false
}

// fromTerminal reports whether a terminal sends s to its foreground
// process group itself: Ctrl-C, Ctrl-\ and the hangup.
func fromTerminal(s os.Signal) bool {
	switch s {
	case syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP:
		return true
	}
	return false
}

// isTerminalReader reports whether r is a terminal.
func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// child is run's command as lockctl signals it.
type child struct {
	pid int
	// terminal: the command is in lockctl's process group, signalled
	// alone; else it leads a group of its own, signalled whole
	terminal bool
}

func (c child) kill(sig syscall.Signal) error {
	if c.terminal {
		return syscall.Kill(c.pid, sig)
	}
	return syscall.Kill(-c.pid, sig)
}

// send delivers sig; a terminating one is followed by SIGCONT, so that a
// stopped command (Ctrl-Z, or a read from the terminal in the background)
// receives it and the run ends.
func (c child) send(sig syscall.Signal) {
	_ = c.kill(sig)
	if terminating(sig) {
		_ = c.kill(syscall.SIGCONT)
	}
}

// supervisor passes signals to the command once it runs, and aborts the
// wait for the lease before.
type supervisor struct {
	mu       sync.Mutex
	terminal bool        // the command shares lockctl's terminal and process group
	started  bool        // the command is being started or runs: no more aborts
	cmd      *child      // the running command, nil when none
	pending  []os.Signal // received while the command was being started
	aborted  os.Signal   // the signal that aborted the wait
	abort    context.CancelCauseFunc
	log      zerolog.Logger
}

var errInterrupted = errors.New("interrupted")

func (s *supervisor) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.cmd != nil && s.terminal && fromTerminal(sig):
		// the terminal sent it to the whole process group, the command
		// included: forwarding it would deliver it twice
		s.log.Info().Str("signal", signalName(sig)).Int("pid", s.cmd.pid).
			Msg("the terminal signalled the command itself: not forwarded")
	case s.cmd != nil:
		s.forward(sig)
	case s.started:
		// the command's start may come before or after the signal: it is
		// forwarded once the command runs (in a terminal, a signal of the
		// terminal in this window may reach the command twice, never none)
		s.pending = append(s.pending, sig)
	case terminating(sig) && s.aborted == nil:
		s.aborted = sig
		s.abort(errInterrupted)
	}
}

func (s *supervisor) forward(sig os.Signal) {
	s.log.Info().Str("signal", signalName(sig)).Int("pid", s.cmd.pid).Msg("forwarding signal to the command")
	s.cmd.send(sig.(syscall.Signal))
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

// running records the command's process and delivers the signals that
// came while it was started.
func (s *supervisor) running(pid int) child {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmd = &child{pid: pid, terminal: s.terminal}
	for _, sig := range s.pending {
		s.forward(sig)
	}
	s.pending = nil
	return *s.cmd
}

func (s *supervisor) exited() {
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

// forwardSignals passes lockctl's signals (a.sigs, else the process's) to
// sup until the returned stop is called. The end of ctx aborts a wait for
// the lease as SIGTERM would.
func (a *app) forwardSignals(ctx context.Context, sup *supervisor) (stop func()) {
	sigs, unnotify := a.sigs, func() {}
	if sigs == nil {
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, forwardedSignals...)
		sigs, unnotify = ch, func() { signal.Stop(ch) }
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		done := ctx.Done()
		for {
			select {
			case <-quit:
				return
			case s := <-sigs:
				sup.signal(s)
			case <-done: // the caller's context ended: abort a wait, like SIGTERM
				done = nil
				sup.interrupt(syscall.SIGTERM)
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		unnotify()
	}
}

// leasedRun is one run of a command under a lease, and what came of it.
type leasedRun struct {
	a    *app
	ctx  context.Context // the caller's
	spec runSpec
	sup  *supervisor
	c    *coordinator.Coordinator
	s    *redisstore.Store // c's, to tell a forced release from an expiry

	status   int                 // the command's exit status, -1 when it did not run
	ending   string              // how the command ended, for the lease-lost message
	startErr error               // the command could not be started
	leases   []coordinator.Lease // the leases held, as taken
}

// runLeased runs the command of spec under its lease.
func (a *app) runLeased(ctx context.Context, spec runSpec) error {
	// the lease's context ends only by a signal before the command started:
	// once it runs, signals go to the command and the lease is kept until
	// it exits
	hctx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	sup := &supervisor{abort: abort, log: a.log, terminal: isTerminalReader(a.stdin)}
	defer a.forwardSignals(ctx, sup)()

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
	run := &leasedRun{a: a, ctx: ctx, spec: spec, sup: sup, c: c, s: rc.store, status: -1}
	var opts []coordinator.AcquireOption
	if spec.ttl > 0 {
		opts = append(opts, coordinator.TTL(spec.ttl))
	}
	if !spec.campaign {
		opts = append(opts, coordinator.Wait(spec.wait))
	}
	switch {
	case spec.election != "":
		err = c.Lead(hctx, spec.election, spec.owner, spec.value, run.underTerm, opts...)
	case len(spec.claims) > 1:
		err = c.HoldAll(hctx, spec.owner, spec.claims, run.underLeases, opts...)
	default:
		err = c.Hold(hctx, spec.resource, spec.owner, run.underLease, append(opts, modeOptions(spec.claims[0])...)...)
	}
	return run.outcome(err)
}

// underTerm is Lead's function: underLease with the term as the lease.
func (r *leasedRun) underTerm(lctx context.Context, t *coordinator.Term) error {
	return r.underLease(lctx, coordinator.Lease{Resource: r.spec.resource, Owner: t.Candidate, Token: t.Token})
}

// underLease is Hold's function: underLeases with one lease.
func (r *leasedRun) underLease(lctx context.Context, l coordinator.Lease) error {
	return r.underLeases(lctx, []coordinator.Lease{l})
}

// underLeases is HoldAll's function: it runs the command and checks the
// leases after it.
func (r *leasedRun) underLeases(lctx context.Context, ls []coordinator.Lease) error {
	r.leases = ls
	if !r.sup.begin() {
		return errInterrupted
	}
	a := r.a
	a.log.Info().Str("resources", resourcesOf(r.spec.claims)).Str("owner", r.spec.owner).Uint64("token", ls[0].Token).
		Strs("command", r.spec.argv).Bool("terminal", r.sup.terminal).Msg("leases held, starting the command")
	cmd := r.command(ls)
	waited, err := startCommand(cmd)
	if err != nil {
		r.startErr = err
		return err
	}
	ch := r.sup.running(cmd.Process.Pid)
	a.log.Debug().Int("pid", ch.pid).Msg("command started")
	lost, waitErr := r.supervise(lctx, ch, waited)
	a.log.Debug().AnErr("wait", waitErr).Msg("command ended")
	r.sup.exited()
	r.status = exitStatus(cmd.ProcessState)
	if lost {
		return nil // Hold joins the loss
	}
	r.ending = fmt.Sprintf("the command exited with status %d", r.status)
	for _, l := range ls {
		if err := r.checkLease(l); err != nil {
			return err
		}
	}
	return nil
}

// command is the command of the run, with the lease in its environment.
func (r *leasedRun) command(ls []coordinator.Lease) *exec.Cmd {
	argv := r.spec.argv
	cmd := exec.Command(argv[0], argv[1:]...)
	extra := leaseEnv(r.spec.owner, ls)
	if r.spec.election != "" {
		extra = append(extra, "LOCKCOORD_ELECTION="+r.spec.election, "LOCKCOORD_VALUE="+r.spec.value)
	}
	cmd.Env = commandEnv(os.Environ(), r.spec.keepCredentials, extra...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.a.stdin, r.a.stdout, r.a.stderr
	cmd.SysProcAttr = childAttr(r.sup.terminal)
	cmd.WaitDelay = time.Second // for pipes held open by orphans
	return cmd
}

// startCommand starts cmd and returns the channel of its Wait's result.
// The command is started and waited for from one goroutine locked to its
// OS thread: on Linux the parent-death signal (childAttr) fires when the
// thread that started the child ends, not the process, so that thread
// must outlive the command.
func startCommand(cmd *exec.Cmd) (<-chan error, error) {
	started, waited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}

// supervise waits for the command to exit. If the lease is lost first,
// the command gets SIGTERM, then SIGKILL after --grace; lost reports it.
func (r *leasedRun) supervise(lctx context.Context, ch child, waited <-chan error) (lost bool, err error) {
	select {
	case err = <-waited:
		return false, err
	case <-lctx.Done():
	}
	r.a.log.Error().Err(context.Cause(lctx)).Int("pid", ch.pid).Msg("lease lost, terminating the command")
	ch.send(syscall.SIGTERM)
	r.ending = "the command was terminated with SIGTERM"
	t := time.NewTimer(r.spec.grace)
	defer t.Stop()
	select {
	case err = <-waited:
	case <-t.C:
		_ = ch.kill(syscall.SIGKILL)
		r.ending = fmt.Sprintf("the command did not exit within --grace %s of SIGTERM and was killed", r.spec.grace)
		err = <-waited
	}
	return true, err
}

// checkLease checks, after the command ended, that the owner still holds
// l with its token: the keep-alive may not have noticed a loss (the
// command ended before its next renewal, or lockctl was frozen).
func (r *leasedRun) checkLease(l coordinator.Lease) error {
	res, owner, token := l.Resource, r.spec.owner, l.Token
	vctx, cancel := r.a.opContext(context.WithoutCancel(r.ctx))
	defer cancel()
	holders, err := r.c.Holders(vctx, res)
	switch {
	case errors.Is(err, coordinator.ErrNotHeld):
		reason := fmt.Errorf("%w: the lease was gone when the command ended", coordinator.ErrExpired)
		if by, forced, ferr := r.s.ForcedBy(vctx, res, token); ferr == nil && forced {
			reason = fmt.Errorf("%w by %q: the lease was gone when the command ended", coordinator.ErrLeaseForced, by)
		}
		return &coordinator.LostError{Resource: res, Owner: owner, Token: token, Reason: reason}
	case err != nil:
		return fmt.Errorf("check the lease on %s after the command (exit status %d): %w", res, r.status, err)
	}
	if err := heldBy(holders, owner, token); err != nil {
		return &coordinator.LostError{Resource: res, Owner: owner, Token: token,
			Reason: fmt.Errorf("when the command ended: %w", err)}
	}
	return nil
}

// outcome is run's result from Hold's error: the exit status and message.
func (r *leasedRun) outcome(err error) error {
	switch {
	case errors.Is(err, coordinator.ErrLeaseLost):
		var le *coordinator.LostError
		if errors.As(err, &le) { // the first loss found, not every report of it
			err = le
		}
		return exitWith(ExitLeaseLost, fmt.Errorf("%w; %s", err, r.ending))
	case r.startErr != nil:
		code := ExitCannotExec
		if errors.Is(r.startErr, exec.ErrNotFound) || errors.Is(r.startErr, fs.ErrNotExist) {
			code = ExitNotFound
		}
		return exitWith(code, fmt.Errorf("cannot run %q: %w", r.spec.argv[0], r.startErr))
	case r.sup.abortedBy() != nil && r.status < 0:
		sig := r.sup.abortedBy()
		return exitWith(128+int(sig.(syscall.Signal)),
			fmt.Errorf("interrupted by %s while waiting for the lease on %s", signalName(sig), r.waitedFor()))
	case err != nil && r.status >= 0:
		// the command ran; checking or releasing the lease failed
		return fmt.Errorf("the command exited with status %d, then: %w", r.status, err)
	case err != nil:
		return err
	}
	r.a.log.Info().Str("resources", resourcesOf(r.spec.claims)).Int("status", r.status).
		Msg("command ended, leases released")
	if r.status != 0 {
		code, note := commandStatus(r.status, r.spec.collision)
		if note != "" {
			return exitWith(code, errors.New(note))
		}
		return exitWith(code, nil)
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

// waitedFor names what run waited for: its resources, or lead's office.
func (r *leasedRun) waitedFor() string {
	if len(r.spec.claims) > 1 {
		return resourcesOf(r.spec.claims)
	}
	return r.spec.resource.String()
}
