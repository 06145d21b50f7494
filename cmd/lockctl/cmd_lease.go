package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// outcomeView is the JSON of acquire, renew and release: what happened and
// the lease as Redis reported it (the holder's, on a conflict).
type outcomeView struct {
	Outcome string `json:"outcome"`
	leaseView
}

// Outcomes of acquire, renew and release.
const (
	outAcquired    = "acquired"
	outReentered   = "reentered"
	outRenewed     = "renewed"
	outReleased    = "released"
	outDecremented = "decremented"
	outForced      = "forced"
	outConflict    = "conflict"
	outNotHeld     = "not_held"
	outExpired     = "expired"
)

// requestID returns a new request id for a store call.
func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "lockctl-" + hex.EncodeToString(b[:])
}

// leaseFlags are the flags of acquire, renew and release.
type leaseFlags struct {
	owner  string
	ttl    time.Duration
	wait   time.Duration
	token  uint64
	all    bool
	force  bool
	by     string // release --force: the operator
	asJSON bool
}

// checkBy checks release's --by, which goes with --force, and sets it to
// the OS user when not given.
func (lf *leaseFlags) checkBy(cmd *cobra.Command) error {
	given := cmd.Flags().Changed("by")
	switch {
	case given && !lf.force:
		return usagef("release --by goes with --force: it names the operator who forced the lease off")
	case !lf.force:
		return nil
	case !given:
		lf.by = osUser()
	}
	if err := coordinator.ValidateOperator(lf.by); err != nil {
		return fmt.Errorf("bad --by: %w", err)
	}
	return nil
}

// osUser names the user lockctl runs as: the login name, else the uid.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

func (lf *leaseFlags) check(cmd *cobra.Command, needOwner bool) error {
	if needOwner && lf.owner == "" {
		return usagef("%s needs --owner (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
	}
	if lf.owner != "" {
		if err := coordinator.ValidateOwner(lf.owner); err != nil {
			return fmt.Errorf("bad --owner: %w", err)
		}
	}
	if f := cmd.Flags().Lookup("ttl"); f != nil && f.Changed {
		if err := coordinator.ValidateTTL(lf.ttl); err != nil {
			return fmt.Errorf("bad --ttl: %w", err)
		}
	}
	if lf.wait < 0 {
		return usagef("bad --wait %s: must not be negative", lf.wait)
	}
	return nil
}

// ttlFor returns --ttl, or the default TTL of the resource type.
func (lf *leaseFlags) ttlFor(r coordinator.Resource) time.Duration {
	if lf.ttl > 0 {
		return lf.ttl
	}
	return coordinator.DefaultTTLFor(r.Type)
}

// printOutcome prints the result of a lease command.
func printOutcome(w io.Writer, asJSON bool, outcome string, v leaseView) error {
	if asJSON {
		return writeJSON(w, outcomeView{Outcome: outcome, leaseView: v})
	}
	exp := ""
	if v.ExpiresAt != nil {
		exp = " expires_at=" + fmtTime(v.ExpiresAt)
	}
	_, err := fmt.Fprintf(w, "%s %s owner=%q token=%d count=%d%s%s\n", outcome, v.Resource, v.Owner, v.Token, v.Count, modeText(v), exp)
	return err
}

// failureView describes the holder named by a conflict or lease error, for
// --json output of a refused call. ok is false for other errors.
func failureView(s *redisstore.Store, r coordinator.Resource, err error) (string, leaseView, bool) {
	var ce *coordinator.ConflictError
	if errors.As(err, &ce) {
		v := newLeaseView(s, r, coordinator.Lease{Resource: r, Owner: ce.Holder, Token: ce.Token,
			Count: ce.Count, ExpiresAt: ce.ExpiresAt, Mode: ce.Mode, Permits: ce.Permits})
		v.Holders = ce.Holders
		return outConflict, v, true
	}
	var le *coordinator.LeaseError
	if errors.As(err, &le) {
		out := outNotHeld
		if errors.Is(err, coordinator.ErrExpired) {
			out = outExpired
		}
		v := newLeaseView(s, r, coordinator.Lease{})
		if le.Holder != "" {
			v.Owner, v.Token, v.Held = le.Holder, le.HolderToken, true
		}
		return out, v, true
	}
	if errors.Is(err, coordinator.ErrNotHeld) {
		return outNotHeld, newLeaseView(s, r, coordinator.Lease{}), true
	}
	return "", leaseView{}, false
}

// leaseCommand runs op on a connected store and prints its outcome.
func (a *app) leaseCommand(cmd *cobra.Command, arg string, lf *leaseFlags, extra time.Duration,
	op func(ctx context.Context, s *redisstore.Store, r coordinator.Resource) (string, coordinator.Lease, error)) error {
	r, err := parseResource(arg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), a.g.timeout+extra)
	defer cancel()
	rc, err := a.connect(ctx)
	if err != nil {
		return a.jsonFailure(lf.asJSON, err)
	}
	defer func() { _ = rc.Close() }()
	outcome, l, err := op(ctx, rc.store, r)
	if err != nil {
		out, v, ok := failureView(rc.store, r, err)
		if !ok {
			return a.jsonFailure(lf.asJSON, err)
		}
		if lf.asJSON {
			_ = printOutcome(a.stdout, true, out, v)
		}
		return err
	}
	return printOutcome(a.stdout, lf.asJSON, outcome, newLeaseView(rc.store, r, l))
}

// acquireTokenExample takes a lease in a shell script and keeps its token
// only when it was taken here: jq -e fails when select leaves nothing (a
// conflict), and so does the pipeline. TestAcquireTokenExample runs it.
const acquireTokenExample = `TOKEN=$(lockctl acquire plan/42 --owner "$HOSTNAME" --json |
    jq -er 'select(.outcome == "acquired" or .outcome == "reentered") | .token') || exit 3`

const leaseExitHelp = "Exit status: 0 done, 3 %s; " + commonExits + "."

func (a *app) acquireCmd() *cobra.Command {
	lf := &leaseFlags{}
	cf := &claimFlags{}
	cmd := &cobra.Command{
		Use:   "acquire RESOURCE... [--shared RESOURCE]... [--permits N] --owner O [--ttl D] [--wait D]",
		Short: "Take a lease (or re-enter the owner's own), exclusive or shared, on one or several resources",
		Long: `acquire takes the lease on RESOURCE for --owner, with a new fencing token,
or re-enters the owner's own lease (hold count + 1, same token, TTL
refreshed). The lease is not renewed: renew it, or use run. --ttl defaults
to the resource type's TTL (plan 5m, project 10m, others 1m). --wait
waits up to D for the holder's release instead of failing at once.

` + claimsHelp + `

The output names the outcome (acquired, reentered) and the lease, one
line per resource; with --json one object per resource and line: outcome,
resource, owner, token (a decimal string), count, mode, permits (when
capped), expires_at, key. On a conflict --json prints the busy resource's
holder with outcome "conflict" and exits 3: a script must check the
outcome (or the exit status) before it uses the token, as the last
example does.

` + fmt.Sprintf(leaseExitHelp, "held by another owner (with several resources: one of them; none is then held)"),
		Example: `  lockctl acquire plan/42 --owner worker-1
  lockctl acquire plan/42 --owner worker-1 --ttl 30s --wait 10s --json
  lockctl acquire --shared project/apollo plan/42 --owner worker-1
  lockctl acquire --shared job/model-api --permits 4 --owner worker-1
  ` + acquireTokenExample,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			claims, err := cf.claims(cmd, args)
			if err != nil {
				return err
			}
			if err := lf.check(cmd, true); err != nil {
				return err
			}
			if len(claims) > 1 {
				return a.acquireAll(cmd, claims, lf)
			}
			return a.leaseCommand(cmd, claims[0].Resource.String(), lf, lf.wait, func(ctx context.Context, s *redisstore.Store, r coordinator.Resource) (string, coordinator.Lease, error) {
				// Orphan, not Close: Close would release the lease this
				// command takes; Orphan leaves it to its TTL
				c := coordinator.New(s, coordinator.WithLogger(a.log))
				defer c.Orphan()
				opts := append(modeOptions(claims[0]), coordinator.TTL(lf.ttlFor(r)), coordinator.Wait(lf.wait))
				l, err := c.Acquire(ctx, r, lf.owner, opts...)
				return outcomeOf(l), l, err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&lf.owner, "owner", "", "owner of the lease (required)")
	f.DurationVar(&lf.ttl, "ttl", 0, "lease TTL (default: the resource type's)")
	f.DurationVar(&lf.wait, "wait", 0, "wait up to this long for the holder's release")
	f.BoolVar(&lf.asJSON, "json", false, "print JSON")
	cf.add(f)
	return cmd
}

func (a *app) renewCmd() *cobra.Command {
	lf := &leaseFlags{}
	cmd := &cobra.Command{
		Use:   "renew RESOURCE --owner O [--ttl D] [--token N]",
		Short: "Extend the owner's lease to now + TTL (Redis time)",
		Long: `renew sets the expiry of --owner's lease on RESOURCE to now + --ttl (the
resource type's TTL by default), leaving the hold count alone. With
--token, only the lease with that fencing token is renewed: a later lease
of the same owner is not.

` + fmt.Sprintf(leaseExitHelp, "not held by the owner (another holds it, or the token differs) or expired"),
		Example: `  lockctl renew plan/42 --owner worker-1
  lockctl renew plan/42 --owner worker-1 --ttl 2m --token 1718000000000123 --json`,
		Args: resourceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lf.check(cmd, true); err != nil {
				return err
			}
			return a.leaseCommand(cmd, args[0], lf, 0, func(ctx context.Context, s *redisstore.Store, r coordinator.Resource) (string, coordinator.Lease, error) {
				l, err := s.Renew(ctx, coordinator.Request{Resource: r, Owner: lf.owner, TTL: lf.ttlFor(r),
					RequestID: requestID(), Token: lf.token})
				return outRenewed, l, err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&lf.owner, "owner", "", "owner of the lease (required)")
	f.DurationVar(&lf.ttl, "ttl", 0, "new TTL (default: the resource type's)")
	f.Uint64Var(&lf.token, "token", 0, "renew only the lease with this fencing token")
	f.BoolVar(&lf.asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) releaseCmd() *cobra.Command {
	lf := &leaseFlags{}
	cmd := &cobra.Command{
		Use:   "release RESOURCE (--owner O [--all] | --force [--by OPERATOR])",
		Short: "Drop a hold of the owner's lease, or force a lease free",
		Long: `release drops one hold of --owner's lease on RESOURCE (every hold with
--all); at zero holds the lease is deleted (outcome released, else
decremented). release --force deletes the lease whoever holds it, whatever
its count, and records a "forced" event in the audit outbox, naming the
operator (--by, default the OS user) in the event and the ledger: the
operator's way out of a stuck lease. Its holder learns of the loss at its
next renewal, as "forced" (lockctl run exits 5).

` + fmt.Sprintf(leaseExitHelp, "not held by the owner, or free (--force)"),
		Example: `  lockctl release plan/42 --owner worker-1
  lockctl release plan/42 --owner worker-1 --all --json
  lockctl release --force plan/42 --by "alice (INC-1234)"`,
		Args: resourceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lf.force && (lf.owner != "" || lf.all) {
				return usagef("release --force takes no --owner or --all: it frees the lease whoever holds it")
			}
			if err := lf.checkBy(cmd); err != nil {
				return err
			}
			if err := lf.check(cmd, !lf.force); err != nil {
				return err
			}
			return a.leaseCommand(cmd, args[0], lf, 0, func(ctx context.Context, s *redisstore.Store, r coordinator.Resource) (string, coordinator.Lease, error) {
				if lf.force {
					l, err := s.ForceReleaseBy(ctx, r, lf.by, requestID())
					return outForced, l, err
				}
				l, err := s.Release(ctx, coordinator.Request{Resource: r, Owner: lf.owner, RequestID: requestID(), All: lf.all})
				if l.Count > 0 {
					return outDecremented, l, err
				}
				return outReleased, l, err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&lf.owner, "owner", "", "owner of the lease (required without --force)")
	f.BoolVar(&lf.all, "all", false, "drop every hold, not one")
	f.BoolVar(&lf.force, "force", false, "delete the lease whoever holds it (recorded as a forced event)")
	f.StringVar(&lf.by, "by", "", "with --force: the operator recorded in the event and the ledger (default: the OS user)")
	f.BoolVar(&lf.asJSON, "json", false, "print JSON")
	return cmd
}
