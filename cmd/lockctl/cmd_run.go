package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lockcoord/lockcoord/coordinator"
)

// defaultGrace is how long run's command has to exit after SIGTERM when
// the lease is lost, before SIGKILL.
const defaultGrace = 5 * time.Second

// runHelp is the long help of run.
const runHelp = `run takes the lease on RESOURCE (waiting up to --wait for its holder), runs
COMMAND while a keep-alive renews the lease every third of --ttl, and
releases the lease when the command ends. The command's environment has
LOCKCOORD_TOKEN (the fencing token, a decimal string: pass it with every
write to the protected resource), LOCKCOORD_RESOURCE and LOCKCOORD_OWNER.
The variables that carry credentials (` + credentialEnvHelp + `) are
taken out of the command's environment unless --keep-credentials is
given. run is Unix-only.

Signals. Before the command starts, SIGINT, SIGTERM, SIGHUP and SIGQUIT
abort the wait for the lease (exit status 128+N). Once it runs, lockctl
keeps the lease until the command exits, and:
  - stdin not a terminal (a script, cron, CI, a service): the command runs
    in a process group of its own. SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    SIGUSR1 and SIGUSR2 sent to lockctl are forwarded to that group, and
    the lease's loss ends the whole group.
  - stdin a terminal: the command stays in lockctl's process group, the
    terminal's job, so it uses the terminal as it would without lockctl:
    it can read it, Ctrl-C, Ctrl-\ and Ctrl-Z reach it, the job can be
    stopped and resumed. The terminal sends SIGINT, SIGQUIT and SIGHUP to
    the command itself, so lockctl does not forward them again; SIGTERM,
    SIGUSR1 and SIGUSR2 are forwarded to the command's process, and the
    lease's loss ends that process (not the processes it started). A job
    stopped for longer than the TTL loses the lease (exit status 5 once
    resumed).
A forwarded SIGTERM, SIGINT, SIGHUP or SIGQUIT is followed by SIGCONT, so
that a stopped command gets it and the run ends.

If the lease is lost (Redis says it is gone or held by another, or no
renewal succeeded before its expiry minus a safety margin), the command
gets SIGTERM, then SIGKILL after --grace, and run exits with status 5.
After the command ends, run checks that the lease still carries its
token before releasing it: if the lease was lost at any moment — also when
the command had already finished, or lockctl itself was frozen — the exit
status is 5, never 0.

If lockctl itself is killed (kill -9), on Linux and FreeBSD the command
gets SIGKILL with it (its own process, not processes it started);
elsewhere it can outlive lockctl, and only the fencing token guards the
resource from its writes.

--owner defaults to <hostname>:lockctl-run:<pid>; --ttl to the resource
type's TTL (plan 5m, project 10m, others 1m).

Exit status: the command's own (128+N when it was killed by signal N),
unless it is one of lockctl's statuses (1-8) or 125: then 125, with the
command's status on stderr (--collision-status N exits N instead, 0 keeps
the command's status); 5 the lease was lost (forced, expired or taken
over), whatever the command's status; 3 the resource is held by another
owner (after --wait); 126 the command could not be executed; 127 not
found; 128+N interrupted by signal N while waiting; 2 bad input, or not a
Unix system; 4 Redis unreachable; 6 credentials refused; 7 permission
refused. See lockctl --help for the whole table.`

// runSpec is what run was asked to do.
type runSpec struct {
	resource coordinator.Resource // the first claim's
	// claims are run's resources and their modes (one for lead)
	claims []coordinator.Claim
	owner  string
	ttl    time.Duration
	wait   time.Duration
	grace  time.Duration
	argv   []string
	// collision is the status that replaces a command's status of
	// lockctl's own (0: none replaced)
	collision int
	// keepCredentials leaves the credential-bearing variables in the
	// command's environment
	keepCredentials bool
	// election, when not "", makes the run lead it (lockctl lead), with
	// value; resource is then its office and owner the candidate
	election, value string
	campaign        bool // lead without --wait: wait until interrupted
}

type runFlags struct {
	owner           string
	ttl             time.Duration
	wait            time.Duration
	grace           time.Duration
	collision       int
	keepCredentials bool
	claimFlags
}

func (a *app) runCmd() *cobra.Command {
	rf := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run RESOURCE... [--shared RESOURCE]... [--permits N] [--owner O] [--ttl D] [--wait D] [--grace D] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lease, renewing it (Unix)",
		Long:  runHelp + "\n\n" + claimsHelp + "\n\n" + runClaimsHelp,
		Example: `  lockctl run plan/42 -- ./rebuild-plan.sh 42
  lockctl run project/alpha --owner "$HOSTNAME" --ttl 30s --wait 5m -- make deploy
  lockctl run job/nightly --grace 30s -- sh -c 'backup --fence "$LOCKCOORD_TOKEN"'
  lockctl run --shared project/apollo plan/42 -- sh -c 'transition --fence "$LOCKCOORD_TOKEN_PLAN_42"'
  lockctl run --shared job/model-api --permits 4 -- ./call-model.sh`,
		Args: runClaimArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := rf.spec(cmd, args)
			if err != nil {
				return err
			}
			return a.runLeased(cmd.Context(), spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rf.owner, "owner", "", "owner of the lease (default <hostname>:lockctl-run:<pid>)")
	f.DurationVar(&rf.ttl, "ttl", 0, "lease TTL, renewed every third of it (default: the resource type's)")
	f.DurationVar(&rf.wait, "wait", 0, "wait up to this long for the holder's release")
	f.DurationVar(&rf.grace, "grace", defaultGrace, "time between SIGTERM and SIGKILL when the lease is lost")
	rf.addStatusFlags(f)
	rf.add(f)
	return cmd
}

// addStatusFlags adds the flags of every command that runs a command
// under a lease: --collision-status and --keep-credentials.
func (rf *runFlags) addStatusFlags(f *pflag.FlagSet) {
	f.IntVar(&rf.collision, "collision-status", ExitCollision,
		"exit with this status when the command's own is one of lockctl's (1-8, 125); 0: the command's status unchanged")
	f.BoolVar(&rf.keepCredentials, "keep-credentials", false,
		"leave "+credentialEnvHelp+" in the command's environment")
}

// runArgs checks run's arguments: one RESOURCE, then -- and a COMMAND.
func runArgs(cmd *cobra.Command, args []string) error {
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
}

// commandAt is where run's COMMAND starts in args: after --, or without
// -- after the one RESOURCE; -1 when that cannot be told (--shared
// without --).
func commandAt(cmd *cobra.Command, args []string) int {
	dash := cmd.ArgsLenAtDash()
	if dash >= 0 {
		return dash
	}
	if shared, _ := cmd.Flags().GetStringArray("shared"); len(shared) > 0 {
		return -1
	}
	return min(1, len(args))
}

// runClaimArgs checks run's arguments: RESOURCEs (or --shared ones),
// then -- and a COMMAND.
func runClaimArgs(cmd *cobra.Command, args []string) error {
	dash := commandAt(cmd, args)
	shared, _ := cmd.Flags().GetStringArray("shared")
	switch {
	case dash < 0:
		return usagef("run needs -- before the COMMAND: lockctl run RESOURCE... -- COMMAND [ARGS...]")
	case dash == 0 && len(shared) == 0:
		return usagef("run needs RESOURCE (or --shared RESOURCE) before -- (see lockctl run --help)")
	case len(args) == dash:
		return usagef("run needs a COMMAND after --: lockctl run RESOURCE... -- COMMAND [ARGS...]")
	}
	return nil
}

// spec checks the flags and returns what run is to do.
func (rf *runFlags) spec(cmd *cobra.Command, args []string) (runSpec, error) {
	dash := commandAt(cmd, args)
	claims, err := rf.claims(cmd, args[:dash])
	if err != nil {
		return runSpec{}, err
	}
	if err := checkTokenEnv(claims); err != nil {
		return runSpec{}, err
	}
	r := claims[0].Resource
	if rf.owner == "" {
		rf.owner = defaultRunOwner()
	}
	lf := &leaseFlags{owner: rf.owner, ttl: rf.ttl, wait: rf.wait}
	if err := lf.check(cmd, true); err != nil {
		return runSpec{}, err
	}
	if rf.grace <= 0 {
		return runSpec{}, usagef("bad --grace %s: must be positive", rf.grace)
	}
	if rf.collision < 0 || rf.collision > 255 {
		return runSpec{}, usagef("bad --collision-status %d: must be from 0 to 255", rf.collision)
	}
	ttl := rf.ttl // 0 with several resources: each its type's
	if len(claims) == 1 {
		ttl = lf.ttlFor(r)
	}
	return runSpec{resource: r, claims: claims, owner: rf.owner, ttl: ttl, wait: rf.wait, grace: rf.grace, argv: args[dash:],
		collision: rf.collision, keepCredentials: rf.keepCredentials}, nil
}

// runClaimsHelp is the part of run's help on several resources.
const runClaimsHelp = `With several resources run holds them all (coordinator.HoldAll), each
renewed on its own, and ends the command (exit status 5) when any of them
is lost. Each lease's token is in LOCKCOORD_TOKEN_<TYPE>_<ID> (upper-case,
every character but A-Z, 0-9 and _ made _: plan/42 gives
LOCKCOORD_TOKEN_PLAN_42, also with one resource; two resources that would
share a name are bad input), LOCKCOORD_RESOURCES lists the resources, one
per line, and LOCKCOORD_TOKEN and LOCKCOORD_RESOURCE are set only with one
resource. --ttl applies to every resource (default: each type's).`

// credentialEnvHelp names the variables run takes out of its command's
// environment.
const credentialEnvHelp = "LOCKCOORD_REDIS_URL, LOCKCOORD_DATABASE_URL and any other LOCKCOORD_*URL*, *PASSWORD*, *SECRET* or *CREDENTIAL* variable"

// isCredentialEnv reports whether the environment entry name=value may
// carry a credential: a lockcoord URL (with its password) or a password,
// secret or credential of lockcoord's.
func isCredentialEnv(entry string) bool {
	name, _, _ := strings.Cut(entry, "=")
	rest, ok := strings.CutPrefix(strings.ToUpper(name), "LOCKCOORD_")
	if !ok {
		return false
	}
	for _, w := range []string{"URL", "PASSWORD", "SECRET", "CREDENTIAL"} {
		if strings.Contains(rest, w) {
			return true
		}
	}
	return false
}

// commandEnv is the environment of a command run under a lease: environ
// without the credential-bearing variables (unless keep), then extra.
func commandEnv(environ []string, keep bool, extra ...string) []string {
	env := make([]string, 0, len(environ)+len(extra))
	for _, e := range environ {
		if keep || !isCredentialEnv(e) {
			env = append(env, e)
		}
	}
	return append(env, extra...)
}

func defaultRunOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + ":lockctl-run:" + strconv.Itoa(os.Getpid())
}
