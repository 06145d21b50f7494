package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/pgaudit"
)

// pgPool opens a pool on --database-url and checks that Postgres answers.
// tune, if given, adjusts the pool's configuration first.
func (a *app) pgPool(ctx context.Context, cmd string, tune ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	if a.g.databaseURL == "" {
		return nil, usagef("%s needs --database-url or LOCKCOORD_DATABASE_URL (a Postgres URL)", cmd)
	}
	cfg, err := pgxpool.ParseConfig(a.g.databaseURL)
	if err != nil {
		return nil, usagef("bad --database-url: %v", err) // pgx masks the password
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > a.g.timeout {
		cfg.ConnConfig.ConnectTimeout = a.g.timeout
	}
	a.pgAddr = net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))) + "/" + cfg.ConnConfig.Database
	for _, f := range tune {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &serviceError{service: "Postgres", addr: a.pgAddr, err: err}
	}
	pctx, cancel := a.opContext(ctx)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, &serviceError{service: "Postgres", addr: a.pgAddr, err: err}
	}
	return pool, nil
}

// mirrorFlags are the consumer options of the commands that build a
// pgaudit.Mirror.
type mirrorFlags struct {
	group    string
	consumer string
}

func (mf *mirrorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&mf.group, "group", pgaudit.DefaultGroup, "Redis consumer group of the mirror")
	cmd.Flags().StringVar(&mf.consumer, "consumer", "", "consumer name in the group (default <hostname>-<pid>-<random>)")
}

func (mf *mirrorFlags) options(a *app) []pgaudit.MirrorOption {
	opts := []pgaudit.MirrorOption{pgaudit.WithGroup(mf.group), pgaudit.WithLogger(a.log)}
	if mf.consumer != "" {
		opts = append(opts, pgaudit.WithConsumer(mf.consumer))
	}
	return opts
}

// withMirror connects to Redis and Postgres and calls fn with a mirror.
func (a *app) withMirror(ctx context.Context, name string, opts []pgaudit.MirrorOption,
	fn func(m *pgaudit.Mirror, rc *redisConn, pool *pgxpool.Pool) error) error {
	pool, err := a.pgPool(ctx, name)
	if err != nil {
		return err
	}
	defer pool.Close()
	cctx, cancel := a.opContext(ctx)
	rc, err := a.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	return fn(pgaudit.NewMirror(pool, rc.store, opts...), rc, pool)
}

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or update the audit tables in Postgres",
		Long: `migrate applies the pgaudit migrations (goose, embedded in lockctl) to the
database of --database-url: the locks mirror and the lock_events ledger.
It is idempotent and safe when several processes run it at once (a
Postgres advisory lock serialises them). It prints the migrations applied.

Exit status: 0; ` + commonExits + ` (2 also without --database-url).`,
		Example: `  lockctl migrate --database-url postgres://lockcoord@db/lockcoord
  LOCKCOORD_DATABASE_URL=postgres://lockcoord@db/lockcoord lockctl migrate`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := a.pgPool(cmd.Context(), "migrate")
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := pgaudit.Migrate(cmd.Context(), pool, a.log)
			if err != nil {
				return &serviceError{service: "Postgres", addr: a.pgAddr, err: err}
			}
			if len(applied) == 0 {
				_, err = fmt.Fprintf(a.stdout, "schema of %s is up to date\n", a.pgAddr)
				return err
			}
			for _, m := range applied {
				if _, err := fmt.Fprintf(a.stdout, "applied %s\n", m); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// mirrorHelp is the long help of mirror.
const mirrorHelp = `mirror runs the pgaudit mirror: it consumes the partition event streams of
--prefix with a Redis consumer group (several mirrors share the work),
applies each batch to the locks mirror and the lock_events ledger in one
Postgres transaction, acknowledges and trims. At start and every minute it
moves stale leases (expired holders that never released) to the ledger.
If Postgres is down, events wait in Redis and are applied when it is back.

On SIGTERM or SIGINT it finishes the batch in hand and the entries it
read ahead, within --drain-timeout (what is left stays pending for the
next mirror), and exits 0. --once drains and exits without waiting for new
events (a one-shot job); it prints the events applied and, if any, the
entries waiting in the dead-letter table (lockctl dead-letters). --metrics-addr serves Prometheus
metrics on /metrics. Logs go to stderr at level info unless --log-level
says otherwise.

Exit status: 0; ` + commonExits + ` (4 only at start: later outages are retried).`

// mirrorRun is one run of the mirror command.
type mirrorRun struct {
	mf           mirrorFlags
	once         bool
	metricsAddr  string
	drainTimeout time.Duration
}

func (a *app) mirrorCmd() *cobra.Command {
	mr := &mirrorRun{}
	cmd := &cobra.Command{
		Use:   "mirror",
		Short: "Copy the audit outbox from Redis to Postgres until SIGTERM",
		Long:  mirrorHelp,
		Example: `  lockctl mirror --database-url postgres://lockcoord@db/lockcoord
  lockctl mirror --log-format json --metrics-addr :9121
  lockctl mirror --once`,
		Annotations: map[string]string{annotationLogLevel: "info"},
		Args:        noArgs,
		RunE:        func(cmd *cobra.Command, _ []string) error { return a.runMirror(cmd.Context(), mr) },
	}
	mr.mf.add(cmd)
	f := cmd.Flags()
	f.BoolVar(&mr.once, "once", false, "drain what is in the streams and exit")
	f.StringVar(&mr.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. :9121)")
	f.DurationVar(&mr.drainTimeout, "drain-timeout", pgaudit.DefaultDrainTimeout, "time allowed after SIGTERM to finish the batch in hand")
	return cmd
}

// runMirror serves the metrics if asked, then drains once or runs the
// mirror until ctx ends.
func (a *app) runMirror(ctx context.Context, mr *mirrorRun) error {
	opts := mr.mf.options(a)
	if mr.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts = append(opts, pgaudit.WithMetrics(reg))
		stop, err := a.serveMetrics(ctx, mr.metricsAddr, reg)
		if err != nil {
			return err
		}
		defer stop()
	}
	opts = append(opts, pgaudit.WithDrainTimeout(mr.drainTimeout))
	return a.withMirror(ctx, "mirror", opts, func(m *pgaudit.Mirror, rc *redisConn, _ *pgxpool.Pool) error {
		if mr.once {
			return a.mirrorOnce(ctx, m)
		}
		a.log.Info().Str("redis", a.target.addr()).Str("postgres", a.pgAddr).Str("prefix", rc.store.Layout().Prefix()).
			Int("partitions", rc.store.Layout().Partitions()).Msg("mirror starting")
		// Run finishes the batch in hand and what it read ahead
		// within the drain timeout after a signal
		return m.Run(ctx)
	})
}

// serveMetrics serves reg on addr at /metrics until stop is called.
func (a *app) serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef("bad --metrics-addr %q: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	a.log.Info().Str("addr", ln.Addr().String()).Msg("serving metrics on /metrics")
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}, nil
}

// mirrorOnce is mirror --once: drain, say how many events were applied
// and how many entries wait in the dead-letter table.
func (a *app) mirrorOnce(ctx context.Context, m *pgaudit.Mirror) error {
	n, err := m.Drain(ctx)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(a.stdout, "applied %d events\n", n); err != nil {
		return err
	}
	_, open, err := m.DeadLetters(ctx, 0)
	if err == nil && open > 0 {
		_, err = fmt.Fprintf(a.stdout, "%d entries wait in the dead-letter table (lockctl dead-letters)\n", open)
	}
	return err
}

func (a *app) cleanupCmd() *cobra.Command {
	mf := &mirrorFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Move stale leases from the mirror to the ledger",
		Long: `cleanup finds the rows of the locks mirror whose lease expired (by Redis
time) and whose Redis key is gone or carries another token — holders that
died without releasing — records each in the ledger as an "expired" event
and deletes it. A row whose lease still lives in Redis is never deleted.
The mirror does this at start and every minute; cleanup is the one-shot
form, e.g. for a deploy step. It prints the rows removed.

Exit status: 0; ` + commonExits + `.`,
		Example: `  lockctl cleanup
  lockctl cleanup --json | jq length`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withMirror(cmd.Context(), "cleanup", mf.options(a), func(m *pgaudit.Mirror, _ *redisConn, _ *pgxpool.Pool) error {
				rows, err := m.Cleanup(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]map[string]any, 0, len(rows))
					for _, r := range rows {
						out = append(out, map[string]any{"resource": r.Resource.String(), "owner": r.Owner,
							"token": strconv.FormatUint(r.Token, 10), "count": r.Count,
							"acquired_at": r.AcquiredAt.UTC(), "expires_at": r.ExpiresAt.UTC()})
					}
					return writeJSON(a.stdout, out)
				}
				fmt.Fprintf(a.stdout, "moved %d stale leases to the ledger\n", len(rows))
				for _, r := range rows {
					fmt.Fprintf(a.stdout, "  %s owner=%q token=%d expired_at=%s\n", r.Resource, r.Owner, r.Token,
						r.ExpiresAt.UTC().Format(time.RFC3339Nano))
				}
				return nil
			})
		},
	}
	mf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the rows removed as a JSON array")
	return cmd
}

// diagnosticsHelp is the long help of diagnostics.
const diagnosticsHelp = `diagnostics reports leases held in Redis, rows mirrored in Postgres, stale
leases (expired holders still in the mirror), Redis leases missing from
the mirror, the mirror's lag (stream entries, not yet read, pending, age
of the oldest unacknowledged), leases held longer than --hold-budget and
the open dead letters (stream entries kept in lock_dead_letters instead of
being applied), elections without a leader for longer than
--vacancy-budget (by the mirror: no row of their office since their last
term ended), as a table or JSON, and judges them against thresholds. A
negative threshold is not checked. It only reads, a page at a time: no
command holds Redis for more than a few milliseconds.

Exit status: 0 healthy, 8 a threshold exceeded (unhealthy); when it could
not check, the status of the cause: 2 bad flag or URL, 4 Redis or
Postgres unreachable, 6 credentials refused, 7 permission refused, 1
internal error (the table: lockctl --help). With --json, stdout has one JSON
object in every case: the report with healthy, problems and exit_code, or
when it could not check {"healthy": false, "problems": [the cause],
"exit_code": N, "error": the cause}. Made for a cron job or a Kubernetes
CronJob.`

// diagnosticsRun is one run of the diagnostics command.
type diagnosticsRun struct {
	mf     mirrorFlags
	th     pgaudit.Thresholds
	opts   pgaudit.DiagnoseOptions
	asJSON bool
}

func (a *app) diagnosticsCmd() *cobra.Command {
	dr := &diagnosticsRun{th: pgaudit.DefaultThresholds()}
	cmd := &cobra.Command{
		Use:   "diagnostics [--json] [--max-stale N] [--max-lag D]",
		Short: "Check the mirror and the leases, for a monitoring job",
		Long:  diagnosticsHelp,
		Example: `  lockctl diagnostics
  lockctl diagnostics --json --max-stale 0 --max-lag 30s
  lockctl diagnostics --hold-budget 2h --max-long-held 0 || page-oncall`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDiagnostics(cmd.Context(), dr) },
	}
	dr.mf.add(cmd)
	dr.addFlags(cmd)
	return cmd
}

// addFlags adds the thresholds and report options.
func (dr *diagnosticsRun) addFlags(cmd *cobra.Command) {
	th, opts := &dr.th, &dr.opts
	f := cmd.Flags()
	f.BoolVar(&dr.asJSON, "json", false, "print the report as JSON")
	f.IntVar(&th.MaxStale, "max-stale", th.MaxStale, "most stale leases allowed (negative: not checked)")
	f.IntVar(&th.MaxMissing, "max-missing", th.MaxMissing, "most Redis leases missing from the mirror")
	f.IntVar(&th.MaxLongHeld, "max-long-held", th.MaxLongHeld, "most leases held longer than --hold-budget")
	f.Int64Var(&th.MaxUndelivered, "max-undelivered", th.MaxUndelivered, "most stream entries not yet read by the mirror")
	f.Int64Var(&th.MaxPending, "max-pending", th.MaxPending, "most stream entries read but not acknowledged")
	f.DurationVar(&th.MaxLag, "max-lag", th.MaxLag, "oldest unacknowledged entry allowed (negative: not checked)")
	f.IntVar(&th.MaxDeadLetters, "max-dead-letters", th.MaxDeadLetters, "most open dead letters (entries not applied)")
	f.IntVar(&th.MaxVacant, "max-vacant", th.MaxVacant, "most elections without a leader for longer than --vacancy-budget")
	f.DurationVar(&opts.VacancyBudget, "vacancy-budget", pgaudit.DefaultVacancyBudget, "report elections without a leader for longer than this (negative: off)")
	f.DurationVar(&opts.HoldBudget, "hold-budget", pgaudit.DefaultHoldBudget, "report leases held longer than this")
	f.DurationVar(&opts.MissingGrace, "missing-grace", pgaudit.DefaultMissingGrace, "do not count leases younger than this as missing")
	f.IntVar(&opts.Limit, "limit", pgaudit.DefaultListLimit, "most leases listed per section (counts are exact)")
}

// runDiagnostics reports and judges; a failure to check has the status
// of its cause, one line, and with --json its JSON.
func (a *app) runDiagnostics(ctx context.Context, dr *diagnosticsRun) error {
	if err := pgaudit.ValidateLimit(dr.opts.Limit); err != nil {
		return a.diagnosticsFailed(dr.asJSON, fmt.Errorf("bad --limit: %w", err))
	}
	err := a.withMirror(ctx, "diagnostics", dr.mf.options(a), func(m *pgaudit.Mirror, _ *redisConn, _ *pgxpool.Pool) error {
		rep, err := m.Diagnose(ctx, dr.opts)
		if err != nil {
			return err
		}
		if err := a.writeDiagnostics(rep, rep.Problems(dr.th), dr.asJSON); err != nil {
			return err
		}
		if !rep.Healthy(dr.th) {
			return exitWith(ExitUnhealthy, nil)
		}
		return nil
	})
	var xe *exitError
	if err != nil && !errors.As(err, &xe) {
		return a.diagnosticsFailed(dr.asJSON, err)
	}
	return err
}

// diagnosticsFailure is diagnostics --json when it could not check: a
// report's verdict fields and the error.
type diagnosticsFailure struct {
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
	jsonError
}

// diagnosticsFailed reports diagnostics that could not check: the
// status and one line of its cause, and with --json the same as one
// object on stdout.
func (a *app) diagnosticsFailed(asJSON bool, err error) error {
	code, msg := a.classify(err)
	msg = oneLine(msg)
	if asJSON {
		_ = writeJSON(a.stdout, diagnosticsFailure{Healthy: false, Problems: []string{"could not check: " + msg},
			jsonError: jsonError{Error: msg, ExitCode: code}})
	}
	return exitWith(code, errors.New(msg))
}

// writeDiagnostics prints the report and its verdict, as a table or JSON.
func (a *app) writeDiagnostics(rep pgaudit.Report, problems []string, asJSON bool) error {
	if asJSON {
		return writeDiagnosticsJSON(a, rep, problems)
	}
	if err := rep.WriteTable(a.stdout); err != nil {
		return err
	}
	if len(problems) == 0 {
		fmt.Fprintln(a.stdout, "\nhealthy")
		return nil
	}
	fmt.Fprintln(a.stdout, "\nUNHEALTHY")
	for _, p := range problems {
		fmt.Fprintln(a.stdout, "  "+p)
	}
	return nil
}

// writeDiagnosticsJSON prints the report's JSON with the verdict added:
// healthy, problems and exit_code.
func writeDiagnosticsJSON(a *app, rep pgaudit.Report, problems []string) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if problems == nil {
		problems = []string{}
	}
	add := func(k string, v any) error {
		raw, err := json.Marshal(v)
		m[k] = raw
		return err
	}
	if err := errors.Join(add("healthy", len(problems) == 0), add("problems", problems),
		add("exit_code", map[bool]int{true: ExitOK, false: ExitUnhealthy}[len(problems) == 0])); err != nil {
		return err
	}
	return writeJSON(a.stdout, m)
}
