package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lockcoord/lockcoord/coordinator"
)

// claimsHelp says how acquire and run are given several resources and
// their modes.
const claimsHelp = `Modes and several resources. Each RESOURCE argument is taken exclusive;
--shared R (repeatable) takes R shared: any number of owners at once,
conflicting only with an exclusive holder. --permits N caps every --shared
resource at N owners at once (a counted lease: the (N+1)-th owner
conflicts); the cap is recorded by the first holder, and asking with
another cap meanwhile is bad input (exit 2) naming the recorded one.
Several resources are taken all or nothing (coordinator.AcquireAll): on a
conflict nothing is held. An owner holding R exclusive that asks for it
shared re-enters its exclusive lease; a sole shared holder may upgrade.`

// claimFlags are the flags that give resources their modes.
type claimFlags struct {
	shared  []string
	permits int
}

// add adds --shared and --permits to f.
func (cf *claimFlags) add(f *pflag.FlagSet) {
	f.StringArrayVar(&cf.shared, "shared", nil, "take this resource shared (repeatable); RESOURCE arguments are exclusive")
	f.IntVar(&cf.permits, "permits", 0, "cap every --shared resource at this many owners at once (a counted lease)")
}

// count is the number of resources given: arguments and --shared.
func (cf *claimFlags) count(args []string) int { return len(args) + len(cf.shared) }

// claims returns the claims of the exclusive resources args and the
// --shared ones, in that order.
func (cf *claimFlags) claims(cmd *cobra.Command, args []string) ([]coordinator.Claim, error) {
	switch {
	case cmd.Flags().Changed("permits") && cf.permits < 1:
		return nil, usagef("bad --permits %d: must be at least 1", cf.permits)
	case cf.permits > 0 && len(cf.shared) == 0:
		return nil, usagef("--permits caps the --shared resources, and none is given: e.g. %s --shared job/model-api --permits %d",
			cmd.CommandPath(), cf.permits)
	case cf.count(args) == 0:
		return nil, usagef("%s needs a RESOURCE (type/id, e.g. plan/42) or --shared RESOURCE (see %s --help)",
			cmd.CommandPath(), cmd.CommandPath())
	case cf.count(args) > coordinator.MaxClaims:
		return nil, usagef("%s takes at most %d resources at once, got %d", cmd.CommandPath(), coordinator.MaxClaims, cf.count(args))
	}
	claims := make([]coordinator.Claim, 0, cf.count(args))
	seen := make(map[coordinator.Resource]bool, cf.count(args))
	add := func(s string, m coordinator.Mode, permits int) error {
		r, err := parseResource(s)
		if err != nil {
			return err
		}
		if seen[r] {
			return usagef("%s is given twice: name each resource once, as RESOURCE (exclusive) or --shared RESOURCE", r)
		}
		seen[r] = true
		claims = append(claims, coordinator.Claim{Resource: r, Mode: m, Permits: permits})
		return nil
	}
	for _, s := range args {
		if err := add(s, coordinator.ModeExclusive, 0); err != nil {
			return nil, err
		}
	}
	for _, s := range cf.shared {
		if err := add(s, coordinator.ModeShared, cf.permits); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

// modeOptions are the options that take claim cl alone with Acquire or
// Hold.
func modeOptions(cl coordinator.Claim) []coordinator.AcquireOption {
	switch {
	case cl.Permits > 0:
		return []coordinator.AcquireOption{coordinator.Permits(cl.Permits)}
	case cl.Mode == coordinator.ModeShared:
		return []coordinator.AcquireOption{coordinator.Shared()}
	}
	return nil
}

// outcomeOf names an acquisition's outcome from its lease.
func outcomeOf(l coordinator.Lease) string {
	if l.Count > 1 {
		return outReentered
	}
	return outAcquired
}

// acquireAll takes claims for lf.owner all or nothing and prints one
// outcome per lease; on a conflict it prints the busy resource's holder.
func (a *app) acquireAll(cmd *cobra.Command, claims []coordinator.Claim, lf *leaseFlags) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), a.g.timeout+lf.wait)
	defer cancel()
	rc, err := a.connect(ctx)
	if err != nil {
		return a.jsonFailure(lf.asJSON, err)
	}
	defer func() { _ = rc.Close() }()
	c := coordinator.New(rc.store, coordinator.WithLogger(a.log))
	defer c.Orphan() // the leases stay, to their TTL
	opts := []coordinator.AcquireOption{coordinator.Wait(lf.wait)}
	if lf.ttl > 0 {
		opts = append(opts, coordinator.TTL(lf.ttl))
	}
	ls, err := c.AcquireAll(ctx, lf.owner, claims, opts...)
	if err != nil {
		var ce *coordinator.ConflictError
		if !errors.As(err, &ce) {
			return a.jsonFailure(lf.asJSON, err)
		}
		if lf.asJSON {
			_, v, _ := failureView(rc.store, ce.Resource, err)
			_ = printOutcome(a.stdout, true, outConflict, v)
		}
		return err
	}
	for _, l := range ls {
		if err := printOutcome(a.stdout, lf.asJSON, outcomeOf(l), newLeaseView(rc.store, l.Resource, l)); err != nil {
			return err
		}
	}
	return nil
}

// tokenEnvName is the variable of run's command that carries the token
// of r: LOCKCOORD_TOKEN_<TYPE>_<ID>, upper-case, every character other
// than A-Z, 0-9 and _ replaced by _.
func tokenEnvName(r coordinator.Resource) string {
	clean := func(s string) string {
		return strings.Map(func(c rune) rune {
			switch {
			case c >= 'a' && c <= 'z':
				return c - 'a' + 'A'
			case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
				return c
			}
			return '_'
		}, s)
	}
	return "LOCKCOORD_TOKEN_" + clean(r.Type) + "_" + clean(r.ID)
}

// checkTokenEnv refuses claims two of which would share a token variable.
func checkTokenEnv(claims []coordinator.Claim) error {
	seen := make(map[string]coordinator.Resource, len(claims))
	for _, cl := range claims {
		name := tokenEnvName(cl.Resource)
		if prev, ok := seen[name]; ok {
			return usagef("%s and %s would both set %s in the command's environment: run them apart", prev, cl.Resource, name)
		}
		seen[name] = cl.Resource
	}
	return nil
}

// leaseEnv is the environment of run's command for leases ls of owner:
// LOCKCOORD_TOKEN_<TYPE>_<ID> per lease, LOCKCOORD_OWNER, and for one
// lease LOCKCOORD_TOKEN and LOCKCOORD_RESOURCE; for several,
// LOCKCOORD_RESOURCES (the resources, one per line).
func leaseEnv(owner string, ls []coordinator.Lease) []string {
	env := make([]string, 0, len(ls)+3)
	names := make([]string, 0, len(ls))
	for _, l := range ls {
		env = append(env, tokenEnvName(l.Resource)+"="+strconv.FormatUint(l.Token, 10))
		names = append(names, l.Resource.String())
	}
	if len(ls) == 1 {
		env = append(env, "LOCKCOORD_TOKEN="+strconv.FormatUint(ls[0].Token, 10), "LOCKCOORD_RESOURCE="+names[0])
	} else {
		env = append(env, "LOCKCOORD_RESOURCES="+strings.Join(names, "\n"))
	}
	return append(env, "LOCKCOORD_OWNER="+owner)
}

// resourcesOf names the resources of claims, for messages.
func resourcesOf(claims []coordinator.Claim) string {
	names := make([]string, len(claims))
	for i, cl := range claims {
		names[i] = cl.Resource.String()
		if cl.Mode == coordinator.ModeShared {
			names[i] += " (shared)"
		}
	}
	return strings.Join(names, ", ")
}

// heldBy finds owner's hold with token among holders; the error says why
// it is not there.
func heldBy(holders []coordinator.Lease, owner string, token uint64) error {
	for _, h := range holders {
		if h.Owner == owner && h.Token == token {
			return nil
		}
	}
	if len(holders) == 0 {
		return fmt.Errorf("%w: the lease was gone", coordinator.ErrNotHeld)
	}
	return fmt.Errorf("%w: the lease was %q's with token %d", coordinator.ErrNotHeld, holders[0].Owner, holders[0].Token)
}
