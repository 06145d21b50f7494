package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// Without it, lockctl reports the module version from the build info, or
// the VCS revision it was built from.
var version = ""

// readBuildInfo returns the build information of the binary (nil when
// it has none).
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// versionString returns "lockctl <version> <Go version> <os>/<arch>". The
// version is, in order: -X main.version; the module version of the build
// info (go install module@v1.2.3); the VCS revision and time the binary
// was built from (go build in a checkout: "devel 0123456789ab
// 2026-05-01T10:00:00Z", "+dirty" when the tree had changes); else
// "devel (no version or VCS information in the build)".
func versionString(bi *debug.BuildInfo) string {
	v := version
	if v == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" && bi != nil {
		var rev, at, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = " " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			v = "devel " + rev[:min(12, len(rev))] + dirty + at
		}
	}
	if v == "" {
		v = "devel (no version or VCS information in the build)"
	}
	return fmt.Sprintf("lockctl %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of lockctl (also lockctl --version)",
		Long: `version prints the version of lockctl: the release it was installed at
(go install github.com/lockcoord/lockcoord/cmd/lockctl@v1.2.3), else the
VCS revision and time of the checkout it was built in, then the Go version
and platform.`,
		Example: "  lockctl version\n  lockctl --version",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(a.stdout, versionString(readBuildInfo()))
			return err
		},
	}
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see %s --help)", cmd.CommandPath(), args[0], cmd.CommandPath())
	}
	return nil
}

// resourceArg accepts exactly one argument, a resource "type/id".
func resourceArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs one RESOURCE argument (type/id, e.g. plan/42), got %d (see %s --help)",
			cmd.CommandPath(), len(args), cmd.CommandPath())
	}
	return nil
}

// parseResource reads a RESOURCE argument; a bad one is a usage error
// naming the rule it breaks.
func parseResource(s string) (coordinator.Resource, error) {
	r, err := coordinator.ParseResource(s)
	if err != nil {
		return r, fmt.Errorf("bad resource: %w", err)
	}
	return r, nil
}

func (a *app) keyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "key RESOURCE",
		Short: "Print the Redis key of a resource's lease, for redis-cli",
		Long: `key prints the Redis key holding the lease on RESOURCE, computed from
--prefix and --partitions without contacting Redis: give --partitions when
the deployment does not use the default 16.

Exit status: 0, or 2 for a bad resource or prefix (the table: lockctl --help).`,
		Example: `  lockctl key plan/42
  redis-cli HGETALL "$(lockctl key plan/42)"
  lockctl key --prefix myapp --partitions 64 project/alpha`,
		Args: resourceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseResource(args[0])
			if err != nil {
				return err
			}
			n := a.g.partitions
			if n == 0 {
				n = redisstore.DefaultPartitions
			}
			layout, err := prefixLayout(a.g.prefix, n)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, layout.LeaseKey(r))
			return err
		},
	}
}

// leaseFields are the hash fields of a lease.
var leaseFields = []string{"owner", "count", "token", "acquired_at", "expires_at"}

// leaseFromHash reads a lease hash (nil values: the key is gone).
func leaseFromHash(r coordinator.Resource, vals []any) (coordinator.Lease, bool, error) {
	if len(vals) != len(leaseFields) || vals[0] == nil {
		return coordinator.Lease{}, false, nil
	}
	str := func(i int) string { s, _ := vals[i].(string); return s }
	l := coordinator.Lease{Resource: r, Owner: str(0)}
	var err error
	if l.Count, err = strconv.Atoi(str(1)); err != nil {
		return l, false, fmt.Errorf("lease %s: count %q: %w", r, str(1), err)
	}
	if l.Token, err = strconv.ParseUint(str(2), 10, 64); err != nil {
		return l, false, fmt.Errorf("lease %s: token %q: %w", r, str(2), err)
	}
	acq, err := strconv.ParseInt(str(3), 10, 64)
	if err != nil {
		return l, false, fmt.Errorf("lease %s: acquired_at %q: %w", r, str(3), err)
	}
	exp, err := strconv.ParseInt(str(4), 10, 64)
	if err != nil {
		return l, false, fmt.Errorf("lease %s: expires_at %q: %w", r, str(4), err)
	}
	l.AcquiredAt, l.ExpiresAt = time.UnixMilli(acq), time.UnixMilli(exp)
	return l, true, nil
}

func (a *app) inspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect RESOURCE",
		Short: "Show the lease on a resource: holder, token, count, expiry, key and fields",
		Long: `inspect reads the lease on RESOURCE from Redis: its key and partition, the
holder, fencing token, hold count, acquisition and expiry times (Redis
time), the remaining TTL of the key (PTTL) and the raw hash fields.

Exit status: 0 held, 3 free; ` + commonExits + `.`,
		Example: `  lockctl inspect plan/42
  lockctl inspect plan/42 --json | jq .owner`,
		Args: resourceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseResource(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := a.opContext(cmd.Context())
			defer cancel()
			rc, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = rc.Close() }()
			v, err := inspectLease(ctx, rc.store, r)
			if err != nil {
				return err
			}
			if err := writeLease(a.stdout, asJSON, v); err != nil {
				return err
			}
			if !v.Held {
				return exitWith(ExitConflict, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// inspectLease reads the lease hash and the key's PTTL in one transaction.
func inspectLease(ctx context.Context, s *redisstore.Store, r coordinator.Resource) (leaseView, error) {
	key := s.Layout().LeaseKey(r)
	var all *redis.MapStringStringCmd
	var pttl *redis.DurationCmd
	_, err := s.Client().TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		// a command refused when queued (NOPERM) aborts the EXEC: report
		// the refusal, not the abort
		for _, c := range []redis.Cmder{all, pttl} {
			if cerr := c.Err(); cerr != nil && !strings.HasPrefix(cerr.Error(), "EXECABORT") {
				err = cerr
				break
			}
		}
		return leaseView{}, fmt.Errorf("inspect %s (%s): %w", r, key, err)
	}
	fields := all.Val()
	vals := make([]any, len(leaseFields))
	for i, f := range leaseFields {
		if v, ok := fields[f]; ok {
			vals[i] = v
		}
	}
	l, ok, err := leaseFromHash(r, vals)
	if err != nil {
		return leaseView{}, err
	}
	v := newLeaseView(s, r, l)
	if ok {
		v.Fields = fields
		v = v.withPTTL(pttl.Val())
	}
	return v, nil
}
