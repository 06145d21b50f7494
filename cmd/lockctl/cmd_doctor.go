package main

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/redisstore"
)

// doctorHelp is the long help of doctor.
const doctorHelp = `doctor checks that the Redis of --redis-url is configured as lockcoord
needs it, and prints one line per check:

  server       each server the workers write to (every Cluster master)
               answers, and runs Redis 6.2 or later
  eviction     maxmemory-policy is noeviction: any other policy lets Redis
               evict a lease, and a second owner then gets the resource
               (volatile-* policies evict exactly the leases, the only
               keys with a TTL)
  persistence  AOF or RDB snapshots: without either a restart loses every
               lease, fence and event stream (a warning: see
               docs/operations.md)
  partitions   the partition count recorded for --prefix and the markers
               of its fence keys agree with each other and with the
               store's count (--partitions, else the recorded count)
  acl          with --worker-user: ACL DRYRUN of every command the
               worker's scripts and calls need, as that user

It reads the policy with CONFIG GET, or INFO when CONFIG is refused; run
it as a user that may (the operator's). It writes nothing.

Exit status: 0 healthy (warnings allowed), 8 a check failed (unhealthy);
when it could not check, the status of the cause: ` + commonExits + `.
With --json, stdout has one JSON object: healthy, exit_code, checks
[{name, status (ok, warn, fail), detail}], servers and partitions.`

// doctorCheck is one line of doctor's report.
type doctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
}

// doctorPartitions is the partition count as doctor found it.
type doctorPartitions struct {
	Store    int            `json:"store"`
	Recorded int            `json:"recorded"` // 0: not recorded
	Marks    map[string]int `json:"marks"`    // partition -> its fence's marker
}

// doctorReport is doctor --json.
type doctorReport struct {
	Healthy    bool                      `json:"healthy"`
	ExitCode   int                       `json:"exit_code"`
	Checks     []doctorCheck             `json:"checks"`
	Servers    []redisstore.ServerConfig `json:"servers"`
	Partitions doctorPartitions          `json:"partitions"`
}

func (r *doctorReport) add(name, status, detail string) {
	r.Checks = append(r.Checks, doctorCheck{Name: name, Status: status, Detail: detail})
}

func (a *app) doctorCmd() *cobra.Command {
	var asJSON bool
	var worker string
	cmd := &cobra.Command{
		Use:   "doctor [--json] [--worker-user NAME]",
		Short: "Check the Redis configuration lockcoord relies on",
		Long:  doctorHelp,
		Example: `  lockctl doctor
  lockctl doctor --json --worker-user lockcoord-worker || page-oncall`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := a.doctor(cmd.Context(), worker)
			if err != nil {
				return a.jsonFailure(asJSON, err)
			}
			if err := writeDoctor(a, rep, asJSON); err != nil {
				return err
			}
			if !rep.Healthy {
				return exitWith(ExitUnhealthy, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.Flags().StringVar(&worker, "worker-user", "", "check the ACL permissions of this Redis user (ACL DRYRUN, Redis 7+)")
	return cmd
}

// doctor runs the checks.
func (a *app) doctor(ctx context.Context, worker string) (doctorReport, error) {
	ctx, cancel := a.opContext(ctx)
	defer cancel()
	rc, err := a.connect(ctx)
	if err != nil {
		return doctorReport{}, err
	}
	defer func() { _ = rc.Close() }()
	rep := doctorReport{Checks: []doctorCheck{}}
	if rep.Servers, err = rc.store.ServerConfigs(ctx); err != nil {
		return rep, err
	}
	for _, sc := range rep.Servers {
		checkServer(&rep, sc)
	}
	pr, err := rc.store.ReadPartitions(ctx)
	if err != nil {
		return rep, err
	}
	checkPartitions(&rep, rc.store, pr)
	if worker != "" {
		checkACL(ctx, &rep, rc, worker)
	}
	rep.Healthy, rep.ExitCode = true, ExitOK
	for _, c := range rep.Checks {
		if c.Status == "fail" {
			rep.Healthy, rep.ExitCode = false, ExitUnhealthy
		}
	}
	return rep, nil
}

// checkServer adds the server, eviction and persistence checks of sc.
func checkServer(rep *doctorReport, sc redisstore.ServerConfig) {
	switch {
	case sc.Version == "":
		rep.add("server", "warn", sc.Addr+": version unknown (INFO: "+cmp.Or(sc.InfoErr, "no redis_version")+")")
	case versionBelow(sc.Version, 6, 2):
		rep.add("server", "fail", sc.Addr+": Redis "+sc.Version+": lockcoord needs Redis 6.2 or later")
	default:
		rep.add("server", "ok", sc.Addr+": Redis "+sc.Version)
	}
	if err := sc.Check(); err != nil {
		rep.add("eviction", "fail", sc.Problem())
	} else {
		rep.add("eviction", "ok", sc.Addr+": maxmemory-policy "+sc.Policy+" (from "+sc.PolicyFrom+")")
	}
	switch p := sc.Persistence(); {
	case sc.PolicyFrom == redisstore.FromMiniredis:
		rep.add("persistence", "ok", sc.Addr+": miniredis, in memory")
	case p == "none":
		rep.add("persistence", "warn", sc.Addr+": none: a restart loses every lease, fence and event stream not yet mirrored")
	case p == "unknown":
		rep.add("persistence", "warn", sc.Addr+": unknown (CONFIG GET refused)")
	default:
		rep.add("persistence", "ok", sc.Addr+": "+p)
	}
}

// versionBelow reports whether version v ("7.0.15") is below major.minor.
func versionBelow(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	ma, err1 := strconv.Atoi(parts[0])
	mi := 0
	var err2 error
	if len(parts) > 1 {
		mi, err2 = strconv.Atoi(parts[1])
	}
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}

// checkPartitions adds the partitions check.
func checkPartitions(rep *doctorReport, s *redisstore.Store, pr redisstore.PartitionReport) {
	n := s.Layout().Partitions()
	rep.Partitions = doctorPartitions{Store: n, Recorded: pr.Recorded, Marks: map[string]int{}}
	for p, m := range pr.Marks {
		rep.Partitions.Marks[strconv.Itoa(p)] = m
	}
	if err := pr.Disagreement(s.Layout(), n); err != nil {
		rep.add("partitions", "fail", oneLine(err.Error()))
		return
	}
	detail := fmt.Sprintf("%d partitions, %d of %d fences marked with it", n, len(pr.Marks), n)
	if pr.Recorded == 0 {
		rep.add("partitions", "warn", detail+"; no count recorded under "+s.Layout().ConfigKey()+
			" (a new prefix, or the key was lost: the next worker records it)")
		return
	}
	rep.add("partitions", "ok", detail+", recorded under "+s.Layout().ConfigKey())
}

// workerCommands are the commands of a worker, with arguments for ACL
// DRYRUN (k: a key of the prefix, c: a channel of the prefix).
var workerCommands = [][]string{
	{"evalsha", "0000000000000000000000000000000000000000", "1", "k"}, {"eval", "return 1", "1", "k"},
	{"time"}, {"info"}, {"hmget", "k", "f"}, {"hset", "k", "f", "v"}, {"del", "k"}, {"pexpire", "k", "1"},
	{"pttl", "k"}, {"set", "k", "v"}, {"get", "k"}, {"sadd", "k", "m"}, {"srem", "k", "m"}, {"smembers", "k"},
	{"xadd", "k", "*", "f", "v"}, {"publish", "c", "m"}, {"subscribe", "c"},
}

// checkACL adds the acl check: ACL DRYRUN of every worker command as
// user, on a key and a channel of the prefix.
func checkACL(ctx context.Context, rep *doctorReport, rc *redisConn, user string) {
	key := rc.store.Layout().FenceKey(0)
	var refused []string
	for _, wc := range workerCommands {
		args := []any{"acl", "dryrun", user}
		for _, w := range wc {
			switch w {
			case "k":
				args = append(args, key)
			case "c":
				args = append(args, rc.store.Layout().ReleaseChannel(0))
			default:
				args = append(args, w)
			}
		}
		v, err := rc.client.Do(ctx, args...).Text()
		if err != nil {
			rep.add("acl", "warn", "cannot check the permissions of "+user+": "+oneLine(err.Error()))
			return
		}
		if v != "OK" {
			refused = append(refused, "+"+wc[0])
		}
	}
	if len(refused) > 0 {
		rep.add("acl", "fail", user+" may not run "+strings.Join(refused, " ")+" (docs/operations.md, Redis ACL users)")
		return
	}
	rep.add("acl", "ok", user+" may run every command a worker sends")
}

// writeDoctor prints the report: a line per check, or JSON.
func writeDoctor(a *app, rep doctorReport, asJSON bool) error {
	if asJSON {
		return writeJSON(a.stdout, rep)
	}
	for _, c := range rep.Checks {
		if _, err := fmt.Fprintf(a.stdout, "%-4s  %-11s  %s\n", strings.ToUpper(c.Status), c.Name, c.Detail); err != nil {
			return err
		}
	}
	verdict := "healthy"
	if !rep.Healthy {
		verdict = "UNHEALTHY"
	}
	_, err := fmt.Fprintln(a.stdout, verdict)
	return err
}
