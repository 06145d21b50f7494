package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
)

// leadHelp is the long help of lead.
const leadHelp = `lead campaigns for ELECTION as --candidate, waiting (until interrupted, or
up to --wait) for the office to fall vacant, then runs COMMAND while it
leads, and resigns when the command ends. The office is an exclusive lease
on election/ELECTION (its TTL --ttl, default 15s: how long a crashed
leader keeps the office), its fencing token the term and --value its value,
which lockctl leader and observers read.

lead is run with an election: the same supervision, signals, credentials
handling and exit statuses (lockctl run --help). The command's environment
has LOCKCOORD_TOKEN (the term, a decimal string: pass it with every write
the leader makes), LOCKCOORD_RESOURCE (election/ELECTION),
LOCKCOORD_OWNER (the candidate), LOCKCOORD_ELECTION and LOCKCOORD_VALUE.
If leadership is lost (the lease expired, was forced or taken over, or no
renewal succeeded in time), the command gets SIGTERM, then SIGKILL after
--grace, and lead exits with status 5.

--candidate defaults to <hostname>:lockctl-lead:<pid>.

Exit status: the command's own, as with run; 5 leadership lost; 3 the
office stayed taken for --wait; 128+N interrupted by signal N while
campaigning; ` + commonExits + `.`

func (a *app) leadCmd() *cobra.Command {
	rf := &runFlags{}
	var value string
	cmd := &cobra.Command{
		Use:   "lead ELECTION [--candidate C] [--value V] [--ttl D] [--wait D] [--grace D] -- COMMAND [ARGS...]",
		Short: "Run a command while leading an election (Unix)",
		Long:  leadHelp,
		Example: `  lockctl lead scheduler --candidate "$HOSTNAME" --value "$HOSTNAME:8080" -- ./schedule.sh
  lockctl lead cleanup --ttl 30s -- sh -c 'cleanup --fence "$LOCKCOORD_TOKEN"'`,
		Args: runArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := rf.leadSpec(cmd, args, value)
			if err != nil {
				return err
			}
			return a.runLeased(cmd.Context(), spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rf.owner, "candidate", "", "the candidate (default <hostname>:lockctl-lead:<pid>)")
	f.StringVar(&value, "value", "", "the leader's value, read by lockctl leader and observers (an address, a version)")
	f.DurationVar(&rf.ttl, "ttl", 0, "the office's TTL, renewed every third of it (default 15s)")
	f.DurationVar(&rf.wait, "wait", 0, "campaign up to this long (default: until interrupted)")
	f.DurationVar(&rf.grace, "grace", defaultGrace, "time between SIGTERM and SIGKILL when leadership is lost")
	rf.addStatusFlags(f)
	return cmd
}

// leadSpec checks lead's flags and returns what it is to do: run's spec
// with the election.
func (rf *runFlags) leadSpec(cmd *cobra.Command, args []string, value string) (runSpec, error) {
	if rf.owner == "" {
		rf.owner = defaultCandidate()
	}
	if err := coordinator.ValidateOwner(rf.owner); err != nil {
		return runSpec{}, usagef("bad --candidate: %v", err)
	}
	if err := coordinator.ValidateMeta(value); err != nil {
		return runSpec{}, usagef("bad --value: %v", err)
	}
	r, err := parseResource(coordinator.ElectionType + "/" + args[0])
	if err != nil {
		return runSpec{}, err
	}
	spec, err := rf.spec(cmd, append([]string{r.String()}, args[1:]...))
	if err != nil {
		return runSpec{}, err
	}
	spec.election, spec.value, spec.campaign = r.ID, value, !cmd.Flags().Changed("wait")
	return spec, nil
}

func defaultCandidate() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + ":lockctl-lead:" + strconv.Itoa(os.Getpid())
}

// leaderView is a leader as lockctl prints it.
type leaderView struct {
	Election  string     `json:"election"`
	Vacant    bool       `json:"vacant"`
	Candidate string     `json:"candidate,omitempty"`
	Value     string     `json:"value,omitempty"`
	Term      uint64     `json:"term,omitempty,string"` // a decimal string: exact in JavaScript and jq
	Since     *time.Time `json:"since,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Gap       bool       `json:"gap,omitempty"`
}

func newLeaderView(l coordinator.Leader) leaderView {
	v := leaderView{Election: l.Election, Vacant: l.Vacant(), Candidate: l.Candidate, Value: l.Value, Term: l.Token, Gap: l.Gap}
	if !l.Since.IsZero() {
		at := l.Since.UTC()
		v.Since = &at
	}
	if !l.ExpiresAt.IsZero() {
		at := l.ExpiresAt.UTC()
		v.ExpiresAt = &at
	}
	return v
}

// writeLeader prints l as one JSON line or one line of text.
func writeLeader(w io.Writer, asJSON bool, l coordinator.Leader) error {
	v := newLeaderView(l)
	if asJSON {
		return writeJSON(w, v)
	}
	gap := ""
	if v.Gap {
		gap = " (after a gap: changes may have been missed)"
	}
	var err error
	switch {
	case v.Vacant && v.Term != 0:
		_, err = fmt.Fprintf(w, "%s: vacant since %s (after term %d)%s\n", v.Election, fmtTime(v.Since), v.Term, gap)
	case v.Vacant:
		_, err = fmt.Fprintf(w, "%s: vacant%s\n", v.Election, gap)
	default:
		_, err = fmt.Fprintf(w, "%s: %s leads, term %d, value %q, since %s, until %s%s\n",
			v.Election, v.Candidate, v.Term, v.Value, fmtTime(v.Since), fmtTime(v.ExpiresAt), gap)
	}
	return err
}

func (a *app) leaderCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "leader ELECTION [--json] [--watch]",
		Short: "Show the leader of an election, or follow its changes",
		Long: `leader reads the leader of ELECTION: its candidate, value, term (the
fencing token) and when the term began and ends unless renewed (Redis
time). With --watch it prints the leader, then every change (a new term, a
new value, a vacancy) until interrupted, one line (one JSON object with
--json) each. A line marked as after a gap ("gap": true) follows events
that could not be read: changes before it may have been missed. --watch
reads the audit outbox: with the outbox off it is refused (status 2).

Exit status: 0 a leader (--watch: interrupted); 3 the office is vacant;
` + commonExits + `.`,
		Example: `  lockctl leader scheduler
  lockctl leader scheduler --json | jq -r .value
  lockctl leader scheduler --watch --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch {
				return a.observe(cmd.Context(), args[0], asJSON)
			}
			return a.leader(cmd.Context(), args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the changes until interrupted")
	return cmd
}

// leader prints the leader of election; a vacancy is status 3.
func (a *app) leader(ctx context.Context, election string, asJSON bool) error {
	octx, cancel := a.opContext(ctx)
	defer cancel()
	rc, err := a.connect(octx)
	if err != nil {
		return a.jsonFailure(asJSON, err)
	}
	defer func() { _ = rc.Close() }()
	c := coordinator.New(rc.store)
	defer func() { _ = c.Close(context.WithoutCancel(octx)) }()
	l, err := c.Leader(octx, election)
	switch {
	case errors.Is(err, coordinator.ErrNotHeld):
		if err := writeLeader(a.stdout, asJSON, coordinator.Leader{Election: election}); err != nil {
			return err
		}
		return exitWith(ExitConflict, nil)
	case err != nil:
		return a.jsonFailure(asJSON, err)
	}
	return writeLeader(a.stdout, asJSON, l)
}

// observe prints the leader of election and every change until ctx ends.
func (a *app) observe(ctx context.Context, election string, asJSON bool) error {
	c, end, err := a.follow(ctx)
	if err != nil {
		return a.jsonFailure(asJSON, err)
	}
	defer end()
	ch, err := c.Observe(ctx, election)
	if err != nil {
		return a.jsonFailure(asJSON, unsupportedAsUsage(err))
	}
	for l := range ch {
		if err := writeLeader(a.stdout, asJSON, l); err != nil {
			return err
		}
	}
	return nil
}

// unsupportedAsUsage turns the refusal of a store without events (the
// outbox switched off) into a usage error: a configuration that does not
// match the command.
func unsupportedAsUsage(err error) error {
	if errors.Is(err, coordinator.ErrUnsupported) {
		return usagef("%v", err)
	}
	return err
}
