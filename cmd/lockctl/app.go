package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// annotationLogLevel is the cobra annotation of a command's default log
// level (none: disabled).
const annotationLogLevel = "lockctl/log-level"

// annotationNoEnv is the cobra annotation of a command that reads the
// global flags it lists (comma-separated) from its command line only,
// never from their environment variables.
const annotationNoEnv = "lockctl/no-env"

// Defaults of the global flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	defaultTimeout  = 10 * time.Second
)

// globals are the flags every command has.
type globals struct {
	redisURL    string
	databaseURL string
	prefix      string
	partitions  int
	logLevel    string
	logFormat   string
	timeout     time.Duration
}

// envFallbacks maps global flags to the environment variables read when
// the flag is not given.
var envFallbacks = []struct{ flag, env string }{
	{"redis-url", "LOCKCOORD_REDIS_URL"},
	{"database-url", "LOCKCOORD_DATABASE_URL"},
	{"prefix", "LOCKCOORD_PREFIX"},
	{"partitions", "LOCKCOORD_PARTITIONS"},
	{"log-level", "LOCKCOORD_LOG_LEVEL"},
	{"log-format", "LOCKCOORD_LOG_FORMAT"},
	{"timeout", "LOCKCOORD_TIMEOUT"},
}

// app is one invocation of lockctl: its streams, environment and parsed
// global flags.
type app struct {
	stdin  io.Reader // given to run's command; nil: the null device
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	g   globals
	set map[string]bool // global flags given on the command line or in the environment
	log zerolog.Logger

	target *redisTarget // parsed --redis-url, once connect ran
	pgAddr string       // host:port/database of --database-url, once pgPool ran
	// sigs is where run receives the signals it forwards (nil: the
	// process's signals through signal.Notify)
	sigs chan os.Signal
}

// newApp returns an invocation with its streams and environment.
func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, set: map[string]bool{}, log: zerolog.Nop()}
}

// execute runs lockctl with args (without the program name) and returns
// its exit status. Errors are printed as one line on stderr.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(strings.NewReader(""))
	started := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		started = true
		return a.setup(cmd)
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if !started {
		var xe *exitError
		var ue *usageError
		if !errors.As(err, &xe) && !errors.As(err, &ue) {
			err = &usageError{msg: err.Error() + " (see lockctl --help)"}
		}
	}
	code, msg := a.classify(err)
	if msg != "" {
		fmt.Fprintln(a.stderr, "lockctl: "+oneLine(msg))
	}
	return code
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "lockctl",
		Short: "Inspect and drive lockcoord leases on Redis",
		Long: `lockctl is the command line of lockcoord, the Redis-backed distributed lock
coordinator: it takes, inspects and releases leases, runs a command while
holding one, runs the demo, and operates the Postgres audit mirror.

Every global flag falls back to an environment variable (except for demo,
which takes its Redis, Postgres and prefix from its command line only):
  --redis-url     LOCKCOORD_REDIS_URL     (default ` + defaultRedisURL + `)
  --database-url  LOCKCOORD_DATABASE_URL  (Postgres, for migrate, mirror, cleanup, diagnostics, dead-letters)
  --prefix        LOCKCOORD_PREFIX        (default ` + redisstore.DefaultPrefix + `)
  --partitions    LOCKCOORD_PARTITIONS    (default: as recorded in Redis, else 16)
  --log-level     LOCKCOORD_LOG_LEVEL     (default: info for mirror, none for other
                                          commands, which report their outcome themselves)
  --log-format    LOCKCOORD_LOG_FORMAT    (console or json)
  --timeout       LOCKCOORD_TIMEOUT       (default 10s)

` + redisURLHelp + `

` + exitStatusHelp,
		Example: `  lockctl demo
  lockctl acquire plan/42 --owner worker-1 --ttl 30s
  LOCKCOORD_REDIS_URL=redis://10.0.0.5:6379/0 lockctl list --type plan
  lockctl run plan/42 --owner nightly -- ./rebuild.sh`,
		Version:       versionString(readBuildInfo()),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see %s --help)", err, c.CommandPath())
	})
	f := root.PersistentFlags()
	f.StringVar(&a.g.redisURL, "redis-url", defaultRedisURL, "Redis URL (env LOCKCOORD_REDIS_URL)")
	f.StringVar(&a.g.databaseURL, "database-url", "", "Postgres URL of the audit mirror (env LOCKCOORD_DATABASE_URL)")
	f.StringVar(&a.g.prefix, "prefix", redisstore.DefaultPrefix, "Redis key prefix (env LOCKCOORD_PREFIX)")
	f.IntVar(&a.g.partitions, "partitions", 0, "partition count; 0: as recorded in Redis, else 16 (env LOCKCOORD_PARTITIONS)")
	f.StringVar(&a.g.logLevel, "log-level", "", "trace, debug, info, warn, error or disabled; default info for mirror, else disabled (env LOCKCOORD_LOG_LEVEL)")
	f.StringVar(&a.g.logFormat, "log-format", "console", "console or json (env LOCKCOORD_LOG_FORMAT)")
	f.DurationVar(&a.g.timeout, "timeout", defaultTimeout, "time limit of each Redis or Postgres operation (env LOCKCOORD_TIMEOUT)")

	root.AddCommand(a.versionCmd(), a.keyCmd(), a.inspectCmd(), a.listCmd(), a.partitionsCmd(),
		a.acquireCmd(), a.renewCmd(), a.releaseCmd(), a.runCmd(), a.demoCmd(),
		a.leadCmd(), a.leaderCmd(), a.watchCmd(),
		a.migrateCmd(), a.mirrorCmd(), a.cleanupCmd(), a.diagnosticsCmd(), a.deadLettersCmd(), a.doctorCmd())
	return root
}

// classify maps err to an exit status and its one-line message, naming
// the Redis or Postgres address of this invocation.
func (a *app) classify(err error) (int, string) {
	redisAddr := ""
	if a.target != nil {
		redisAddr = a.target.addr()
	}
	return classify(err, redisAddr, a.pgAddr)
}

// setup applies the environment fallbacks and configures logging.
func (a *app) setup(cmd *cobra.Command) error {
	flags := cmd.Flags()
	noEnv := "," + cmd.Annotations[annotationNoEnv] + ","
	for _, fe := range envFallbacks {
		fl := flags.Lookup(fe.flag)
		if fl == nil {
			continue
		}
		if fl.Changed {
			a.set[fe.flag] = true
			continue
		}
		if strings.Contains(noEnv, ","+fe.flag+",") {
			continue
		}
		v, ok := a.lookupEnv(fe.env)
		if !ok {
			continue
		}
		if err := fl.Value.Set(v); err != nil {
			return usagef("bad %s=%q: %v", fe.env, v, err)
		}
		a.set[fe.flag] = true
	}
	if a.g.partitions < 0 || a.g.partitions > redisstore.MaxPartitions {
		return usagef("bad --partitions %d: must be from 1 to %d (0: as recorded in Redis)", a.g.partitions, redisstore.MaxPartitions)
	}
	if a.g.timeout <= 0 {
		return usagef("bad --timeout %s: must be positive", a.g.timeout)
	}
	level := a.g.logLevel
	if level == "" {
		level = "disabled"
		if cmd.Annotations[annotationLogLevel] != "" {
			level = cmd.Annotations[annotationLogLevel]
		}
	}
	log, err := newLogger(a.stderr, level, a.g.logFormat)
	if err != nil {
		return err
	}
	a.log = log
	redis.SetLogger(redisLogger{log: log})
	return nil
}

func (a *app) lookupEnv(name string) (string, bool) {
	if a.getenv == nil {
		return "", false
	}
	v := a.getenv(name)
	return v, v != ""
}

// Durations in lockctl's logs, its own and the library's (retry_in,
// took, time_left, outage), carry their unit: zerolog's Dur fields are
// written as Go durations ("1.5s", "16.759185ms"), not as a bare number
// of milliseconds (issue 16.9). Set once, before any logger runs.
func init() { zerolog.DurationFieldFormat = zerolog.DurationFormatString }

// newLogger returns the zerolog logger of --log-level and --log-format,
// writing to w.
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), usagef("bad --log-level %q: must be trace, debug, info, warn, error or disabled", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: !isTerminal(w), TimeFormat: time.RFC3339Nano}
	default:
		return zerolog.Nop(), usagef("bad --log-format %q: must be console or json", format)
	}
	// the keep-alive, the mirror and run log from several goroutines
	return zerolog.New(zerolog.SyncWriter(w)).Level(lvl).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// redisLogger sends go-redis's internal log lines to zerolog at debug
// level, so that they never clutter stderr unasked.
type redisLogger struct{ log zerolog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Str("component", "go-redis").Msg(oneLine(fmt.Sprintf(format, v...)))
}

// opContext bounds one operation by --timeout.
func (a *app) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.g.timeout)
}

// redisConn is a connection to Redis and the store on it.
type redisConn struct {
	client redis.UniversalClient
	store  *redisstore.Store
}

// Close closes the client.
func (c *redisConn) Close() error { return c.client.Close() }

// connect parses --redis-url and returns a store with --prefix and the
// partition count: --partitions when given, else the count recorded in
// Redis for the prefix, else the default.
func (a *app) connect(ctx context.Context) (*redisConn, error) {
	t, err := parseRedisURL(a.g.redisURL)
	if err != nil {
		return nil, err
	}
	a.target = t
	client := t.client()
	opts := []redisstore.Option{redisstore.WithPrefix(a.g.prefix)}
	n := a.g.partitions
	if n == 0 {
		layout, err := prefixLayout(a.g.prefix, redisstore.DefaultPartitions)
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		octx, cancel := a.opContext(ctx)
		v, err := client.Get(octx, layout.ConfigKey()).Result()
		cancel()
		switch {
		case errors.Is(err, redis.Nil):
			n = redisstore.DefaultPartitions
		case err != nil:
			_ = client.Close()
			return nil, fmt.Errorf("read the partition count of prefix %q: %w", a.g.prefix, err)
		default:
			if n, err = strconv.Atoi(v); err != nil {
				_ = client.Close()
				return nil, fmt.Errorf("partition count %q recorded under %s is not a number", v, layout.ConfigKey())
			}
		}
	}
	opts = append(opts, redisstore.WithPartitions(n))
	return &redisConn{client: client, store: redisstore.New(client, opts...)}, nil
}

// flagSet reports whether a global flag was given (flag or environment).
func (a *app) flagSet(name string) bool { return a.set[name] }

// prefixLayout returns the key layout of --prefix with n partitions, for
// the commands that need a key before (or without) a store; a bad prefix
// is a usage error naming --prefix and the rule of redisstore.NewLayout.
func prefixLayout(prefix string, n int) (redisstore.Layout, error) {
	l, err := redisstore.NewLayout(prefix, n)
	if ve, ok := errors.AsType[*coordinator.ValidationError](err); ok && ve.Field == "prefix" {
		return l, usagef("bad --prefix %q: %s", prefix, ve.Rule)
	}
	return l, err
}
