package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

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
			vs, err := inspectLeases(ctx, rc.store, r)
			if err != nil {
				return err
			}
			if err := writeLeases(a.stdout, asJSON, vs); err != nil {
				return err
			}
			if !vs[0].Held {
				return exitWith(ExitConflict, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// inspectLeases reads the lease hash, the key's PTTL and the Redis time
// in one transaction: one view per holder (the exclusive one, or every
// shared one), each with its own fields of the hash; one view that is not
// held when the resource is free.
func inspectLeases(ctx context.Context, s *redisstore.Store, r coordinator.Resource) ([]leaseView, error) {
	key := s.Layout().LeaseKey(r)
	var all *redis.MapStringStringCmd
	var pttl *redis.DurationCmd
	var now *redis.TimeCmd
	_, err := s.Client().TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, key)
		pttl = p.PTTL(ctx, key)
		now = p.Time(ctx)
		return nil
	})
	if err != nil {
		// a command refused when queued (NOPERM) aborts the EXEC: report
		// the refusal, not the abort
		for _, c := range []redis.Cmder{all, pttl, now} {
			if cerr := c.Err(); cerr != nil && !strings.HasPrefix(cerr.Error(), "EXECABORT") {
				err = cerr
				break
			}
		}
		return nil, fmt.Errorf("inspect %s (%s): %w", r, key, err)
	}
	ls, err := redisstore.ParseHolders(r, all.Val(), pttl.Val(), now.Val())
	if err != nil {
		return nil, err
	}
	if len(ls) == 0 {
		return []leaseView{newLeaseView(s, r, coordinator.Lease{})}, nil
	}
	vs := make([]leaseView, len(ls))
	for i, l := range ls {
		vs[i] = newLeaseView(s, r, l).withPTTL(pttl.Val())
		vs[i].Holders, vs[i].Fields = len(ls), holderFields(all.Val(), l)
	}
	return vs, nil
}

// holderFields are the fields of lease hash f that belong to l: all of
// them for an exclusive lease; for a shared one, mode, cap and l's own
// (<field>:<owner>).
func holderFields(f map[string]string, l coordinator.Lease) map[string]string {
	if l.Mode != coordinator.ModeShared {
		return f
	}
	own := map[string]string{"mode": f["mode"], "cap": f["cap"]}
	for k, v := range f {
		if name, ok := strings.CutSuffix(k, ":"+l.Owner); ok && !strings.Contains(name, ":") {
			own[k] = v
		}
	}
	return own
}
