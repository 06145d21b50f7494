package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/cmd/lockctl/internal/demo"
	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

type demoFlags struct {
	workers, plans, projects, subplans int
	plansPerProject                    int
	duration, ttl                      time.Duration
	chaos, asJSON, quiet, keepSchema   bool
	seed                               uint64
}

// demoHelp is the long help of demo.
const demoHelp = `demo runs --workers workers for --duration over --plans plans in --projects
projects. Each worker has its own coordinator and owner, as separate
processes would. Workers move plans through draft -> queued -> running ->
completed. Every transition holds the plan's project shared, capped at
--plans-per-project owners (coordinator.Permits), and the plan exclusive,
in one coordinator.HoldAll: the project's other plans move meanwhile, a
project-wide job does not. Now and then a worker runs a project-wide job
(archiving, rescheduling), holding the project exclusive, waiting its
turn in the store's fair queue. The running phase is long (its subplan
steps take about one TTL in all) and is kept alive by renewal, each step
written under a re-entrant hold. A scheduler elected among the workers
(coordinator.Lead) assigns the subplans of queued plans, each assignment
fenced by its term. Every write goes to a shared in-memory plan store
that checks fencing tokens and rejects stale ones.

At the end it prints acquisitions, re-entries, conflicts, waits, renewals,
acquire latency (p50, p99) and fenced writes rejected, and checks the
invariants: never two live holders in a critical section, fencing tokens
strictly increasing per resource, no lease left behind, plan transitions
in order, never an exclusive project holder while a plan of it is held,
never more holders of a project than its permits; with --database-url
also that the audit ledger has one row per event written.

--chaos freezes workers (their Redis calls and their work) for longer than
the TTL before a write they then send anyway, as a process paused by a
long GC would: the keep-alive declares the lease lost before it expires,
another worker takes the plan, and the plan store rejects the stale write.

The demo takes its services from its own command line only, never from
LOCKCOORD_REDIS_URL, LOCKCOORD_DATABASE_URL or LOCKCOORD_PREFIX, so that it
cannot write into the Redis or the ledger an operator's shell points at.
Without --redis-url it runs on an embedded miniredis and needs nothing but
Go. With --redis-url it uses a key prefix of its own (lockcoord-demo-<id>,
unless --prefix is given) and deletes its keys at the end. With
--database-url it creates a Postgres schema of its own (lockcoord_demo_<id>;
its role needs CREATE on the database), migrates and mirrors into it, and
drops it at the end unless --keep-schema is given: it writes into no other
schema. The summary's header names the Redis, the prefix and the schema.

Exit status: 0 every invariant held, 8 an invariant failed; ` + commonExits + `.`

func (a *app) demoCmd() *cobra.Command {
	df := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run workers that drive plans through their lifecycle under leases, and check the invariants",
		Long:  demoHelp,
		Example: `  lockctl demo
  lockctl demo --workers 16 --duration 30s --chaos
  lockctl demo --json | jq .invariants
  lockctl demo --redis-url redis://127.0.0.1:6379/0 --database-url postgres://localhost/lockcoord`,
		Annotations: map[string]string{annotationNoEnv: "redis-url,database-url,prefix,partitions"},
		Args:        noArgs,
		RunE:        func(cmd *cobra.Command, _ []string) error { return a.runDemo(cmd.Context(), df) },
	}
	f := cmd.Flags()
	f.IntVar(&df.workers, "workers", demo.DefaultWorkers, "workers, each with its own coordinator")
	f.DurationVar(&df.duration, "duration", demo.DefaultDuration, "how long the workers run")
	f.IntVar(&df.plans, "plans", demo.DefaultPlans, "plans open at once (a completed plan is replaced)")
	f.IntVar(&df.projects, "projects", demo.DefaultProjects, "projects the plans belong to")
	f.IntVar(&df.subplans, "subplans", demo.DefaultSubplans, "subplans per plan (steps of the running phase)")
	f.IntVar(&df.plansPerProject, "plans-per-project", demo.DefaultPlansPerProject,
		"most plans of one project in transition at once (the Permits of the project's shared hold)")
	f.DurationVar(&df.ttl, "ttl", demo.DefaultTTL, "TTL of every lease in the demo")
	f.BoolVar(&df.chaos, "chaos", false, "freeze workers for longer than the TTL to show fencing")
	f.Uint64Var(&df.seed, "seed", 0, "random seed (0: random)")
	f.BoolVar(&df.asJSON, "json", false, "print the summary as JSON")
	f.BoolVar(&df.quiet, "quiet", false, "no progress on stderr")
	f.BoolVar(&df.keepSchema, "keep-schema", false, "with --database-url: keep the demo's Postgres schema at the end")
	return cmd
}

// demoRedis is the Redis the demo runs on.
type demoRedis struct {
	store   *redisstore.Store
	name    string
	cleanup func(ctx context.Context) error // deletes the demo's keys (real Redis)
	close   func()
}

// demoRedis starts the embedded miniredis, or connects to --redis-url when
// it was given on the command line. id names the demo's own prefix.
func (a *app) demoRedis(id string) (*demoRedis, error) {
	partitions := a.g.partitions
	if partitions == 0 {
		partitions = redisstore.DefaultPartitions
	}
	if !a.flagSet("redis-url") {
		mr := miniredis.NewMiniRedis()
		// TTLs run on the wall clock, as on a real Redis
		mr.ClockTTL(true)
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start the embedded miniredis: %w", err)
		}
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		return &demoRedis{
			store: redisstore.New(client, redisstore.WithPrefix(a.g.prefix), redisstore.WithPartitions(partitions)),
			name:  "embedded miniredis " + mr.Addr(),
			close: func() { _ = client.Close(); mr.Close() },
		}, nil
	}
	t, err := parseRedisURL(a.g.redisURL)
	if err != nil {
		return nil, err
	}
	a.target = t
	prefix := a.g.prefix
	own := !a.flagSet("prefix")
	if own {
		prefix = "lockcoord-demo-" + id
	}
	if _, err := prefixLayout(prefix, partitions); err != nil {
		return nil, err
	}
	client := t.client()
	s := redisstore.New(client, redisstore.WithPrefix(prefix), redisstore.WithPartitions(partitions))
	d := &demoRedis{store: s, name: t.addr(), close: func() { _ = client.Close() }}
	if own {
		d.cleanup = func(ctx context.Context) error { return deletePrefix(ctx, s) }
	}
	return d, nil
}

// deletePrefix deletes every key of the store's prefix (the demo's own).
func deletePrefix(ctx context.Context, s *redisstore.Store) error {
	pattern := s.Layout().KeyPattern()
	del := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			if err := c.Del(ctx, it.Val()).Err(); err != nil {
				return err
			}
		}
		return it.Err()
	}
	if cc, ok := s.Client().(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
	}
	return del(ctx, s.Client())
}

// newDemoID is the random id of one demo run: its owner names, and its
// own key prefix and Postgres schema on real services.
func newDemoID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *app) runDemo(ctx context.Context, df *demoFlags) error {
	if df.workers < 1 || df.plans < 1 || df.projects < 1 || df.subplans < 1 || df.plansPerProject < 1 {
		return usagef("--workers, --plans, --projects, --subplans and --plans-per-project must be positive")
	}
	// acquire's rule: --ttl 0s is refused, not the default
	if err := coordinator.ValidateTTL(df.ttl); err != nil {
		return fmt.Errorf("bad --ttl: %w", err)
	}
	id := newDemoID()
	dr, err := a.demoRedis(id)
	if err != nil {
		return err
	}
	defer dr.close()
	cfg := df.config(dr.store, "demo-"+id, a.log)
	if !df.quiet {
		cfg.Progress, cfg.Terminal = a.stderr, isTerminal(a.stderr)
	}
	var audit *demoAudit
	if a.g.databaseURL != "" {
		if audit, err = a.startDemoAudit(ctx, dr, id, df.keepSchema); err != nil {
			return err
		}
		defer audit.close()
	}
	sum, err := demo.Run(ctx, cfg)
	switch {
	case err != nil:
	case audit != nil:
		err = audit.finish(ctx, &sum, cfg.Owner)
	default:
		sum.Skip("ledger rows equal events written", "no --database-url")
	}
	a.deleteDemoKeys(ctx, dr)
	if err != nil {
		return err
	}
	sum.Redis = dr.name
	return a.reportDemo(sum, df.asJSON)
}

// config is the demo's configuration from the flags.
func (df *demoFlags) config(s *redisstore.Store, owner string, log zerolog.Logger) demo.Config {
	return demo.Config{
		Store: s, Workers: df.workers, Duration: df.duration, Plans: df.plans, Projects: df.projects,
		Subplans: df.subplans, PlansPerProject: df.plansPerProject, TTL: df.ttl, Chaos: df.chaos, Seed: df.seed, Owner: owner, Log: log,
	}
}

// deleteDemoKeys deletes the demo's keys from a real Redis, when the
// prefix is the demo's own.
func (a *app) deleteDemoKeys(ctx context.Context, dr *demoRedis) {
	if dr.cleanup == nil {
		return
	}
	cctx, cancel := a.opContext(context.WithoutCancel(ctx))
	defer cancel()
	if err := dr.cleanup(cctx); err != nil {
		a.log.Warn().Err(err).Str("prefix", dr.store.Layout().Prefix()).Msg("could not delete the demo's keys")
	}
}

// reportDemo prints the summary; a failed invariant is exit status 1.
func (a *app) reportDemo(sum demo.Summary, asJSON bool) error {
	var err error
	if asJSON {
		err = writeJSON(a.stdout, sum)
	} else {
		err = sum.WriteTable(a.stdout)
	}
	if err != nil {
		return err
	}
	if !sum.OK() {
		var failed []string
		for _, inv := range sum.Invariants {
			if !inv.OK {
				failed = append(failed, inv.Name)
			}
		}
		return exitWith(ExitUnhealthy, errors.New("demo: invariant failed: "+strings.Join(failed, "; ")))
	}
	return nil
}
