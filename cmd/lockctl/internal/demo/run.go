package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Defaults of Config.
const (
	DefaultWorkers  = 8
	DefaultDuration = 10 * time.Second
	DefaultPlans    = 24
	DefaultProjects = 4
	DefaultSubplans = 3
	DefaultTTL      = 2 * time.Second
	// DefaultPlansPerProject is the default cap of plans of one project in
	// transition at once.
	DefaultPlansPerProject = 2
)

// Config configures a demo run.
type Config struct {
	// Store is the store on the demo's Redis; its prefix should be the
	// demo's own.
	Store    *redisstore.Store
	Workers  int           // workers, each with its own coordinator (default 8)
	Duration time.Duration // how long the workers run (default 10 s)
	// Completed, when not 0, ends the run as soon as that many plans
	// completed, if Duration has not ended it first: a run that shows the
	// lifecycle whatever the machine's speed.
	Completed int
	// Jobs, with Completed, also waits for that many project-wide jobs
	// before the run ends early.
	Jobs     int
	Plans    int // plans open at once (default 24); a completed plan is replaced by a new one
	Projects int // projects the plans belong to (default 4)
	Subplans int // subplans per plan (default 3)
	// PlansPerProject caps the plans of one project in transition at once:
	// the Permits of the project's shared hold (default 2).
	PlansPerProject int
	TTL             time.Duration // TTL of every lease (default 2 s)
	Chaos           bool          // freeze workers for longer than the TTL
	Seed            uint64        // random seed (0: random)
	// Owner prefixes the workers' owner names (default "demo").
	Owner string
	// Progress receives progress reports (nil: none); Terminal redraws
	// one line in place instead of printing a line per second.
	Progress io.Writer
	Terminal bool
	Log      zerolog.Logger
}

func (c *Config) defaults() error {
	if c.Store == nil {
		return errors.New("demo: no store")
	}
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.Workers, DefaultWorkers)
	set(&c.Plans, DefaultPlans)
	set(&c.Projects, DefaultProjects)
	set(&c.Subplans, DefaultSubplans)
	set(&c.PlansPerProject, DefaultPlansPerProject)
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Owner == "" {
		c.Owner = "demo"
	}
	if err := coordinator.ValidateTTL(c.TTL); err != nil {
		return err
	}
	switch {
	case c.Workers < 1 || c.Workers > 1000:
		return invalid("--workers", strconv.Itoa(c.Workers), "must be from 1 to 1000")
	case c.Plans < 1 || c.Plans > 100000:
		return invalid("--plans", strconv.Itoa(c.Plans), "must be from 1 to 100000")
	case c.Projects < 1 || c.Projects > c.Plans:
		return invalid("--projects", strconv.Itoa(c.Projects), "must be from 1 to the number of plans")
	case c.Subplans < 1 || c.Subplans > 100:
		return invalid("--subplans", strconv.Itoa(c.Subplans), "must be from 1 to 100")
	case c.Duration <= 0:
		return invalid("--duration", c.Duration.String(), "must be positive")
	case c.Completed < 0:
		return invalid("Completed", strconv.Itoa(c.Completed), "must not be negative")
	case c.Jobs < 0 || c.Jobs > 0 && c.Completed == 0:
		return invalid("Jobs", strconv.Itoa(c.Jobs), "must not be negative, and goes with Completed")
	case c.PlansPerProject < 1 || c.PlansPerProject > 1000:
		return invalid("--plans-per-project", strconv.Itoa(c.PlansPerProject), "must be from 1 to 1000")
	case c.TTL < 100*time.Millisecond:
		return invalid("--ttl", c.TTL.String(), "must be at least 100ms")
	case c.Chaos && c.Duration < 4*c.TTL:
		return invalid("--duration", c.Duration.String(), fmt.Sprintf("must be at least 4 TTLs (%s) with chaos", 4*c.TTL))
	}
	return coordinator.ValidateOwner(c.Owner + "-w1")
}

func invalid(field, value, rule string) error {
	return &coordinator.ValidationError{Field: field, Value: value, Rule: rule}
}

// Run runs the demo until its duration has passed or ctx ends, then stops
// the workers (their coordinators release what they hold), checks the
// invariants and returns the summary. The error reports a failure to run,
// not a failed invariant (see Summary.OK).
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	// one check that Redis answers and the partition count agrees, before
	// any worker starts
	if err := cfg.Store.CheckPartitions(ctx); err != nil {
		return Summary{}, err
	}
	d := &demoRun{cfg: cfg, seed: cfg.Seed, rec: NewRecorder(), plans: NewPlanStore(cfg.Plans, cfg.Projects, cfg.Subplans),
		reg: prometheus.NewRegistry(), start: time.Now()}
	if d.seed == 0 {
		d.seed = rand.Uint64()
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	if cfg.Completed > 0 {
		var wg sync.WaitGroup
		wg.Go(func() { d.endAtCompleted(runCtx, cancel) })
		defer wg.Wait() // runs first: the run has ended, and so has the watch
	}
	d.newWorkers(runCtx)
	prog := newProgress(cfg.Progress, cfg.Terminal, cfg.Duration, d.start)
	d.work(runCtx, prog)
	closeErrs := d.shutdown(ctx)
	elapsed := time.Since(d.start)
	prog.done(d.progress())
	sum := d.summary(elapsed)
	err := d.check(ctx, &sum, closeErrs)
	return sum, err
}

// endAtCompleted ends the run (cancel) once cfg.Completed plans
// completed, or returns when ctx ends first.
func (d *demoRun) endAtCompleted(ctx context.Context, cancel context.CancelFunc) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if st := d.plans.Stats(); st.Completed >= d.cfg.Completed && st.ProjectJobs >= d.cfg.Jobs {
				cancel()
				return
			}
		}
	}
}

// demoRun is one run of the demo: its workers and what they record.
type demoRun struct {
	cfg     Config
	seed    uint64
	rec     *Recorder
	plans   *PlanStore
	reg     *prometheus.Registry
	start   time.Time
	workers []*worker
	// candidates are the workers' campaigns for the scheduler office:
	// each a copy of its worker (same coordinator, owner and store) with
	// a random source and counts of its own, as it runs in a goroutine of
	// its own
	candidates []*worker
}

// newWorkers builds the workers, each with its own coordinator and owner;
// they work until root ends.
func (d *demoRun) newWorkers(root context.Context) {
	cfg := &d.cfg
	ch := &chaos{on: cfg.Chaos, until: d.start.Add(cfg.Duration - 2*cfg.TTL)}
	d.workers = make([]*worker, cfg.Workers)
	owners := make([]string, cfg.Workers)
	for i := range owners {
		owners[i] = cfg.Owner + "-w" + strconv.Itoa(i+1)
	}
	for i := range d.workers {
		ws := &workerStore{inner: cfg.Store, rec: d.rec}
		d.workers[i] = &worker{id: i + 1, owner: owners[i], store: ws, plans: d.plans, cfg: cfg,
			rnd: rand.New(rand.NewPCG(d.seed, uint64(i))), owners: owners, root: root, chaos: ch,
			c: coordinator.New(ws, coordinator.WithDefaultTTL(cfg.TTL), coordinator.WithTTL("plan", cfg.TTL),
				coordinator.WithTTL("project", cfg.TTL), coordinator.WithTTL(coordinator.ElectionType, cfg.TTL),
				coordinator.WithMetrics(d.reg), coordinator.WithLogger(cfg.Log))}
		cand := *d.workers[i]
		cand.rnd = rand.New(rand.NewPCG(d.seed, uint64(i)|1<<32))
		d.candidates = append(d.candidates, &cand)
	}
}

// work runs the workers and reports progress until ctx ends.
func (d *demoRun) work(ctx context.Context, prog *progress) {
	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Go(func() { w.run(ctx) })
	}
	for _, w := range d.candidates {
		wg.Go(func() { w.campaign(ctx) })
	}
	prog.run(ctx, d.progress)
	wg.Wait()
}

func (d *demoRun) progress() progressLine {
	return progressLine{rec: d.rec.Stats(), store: d.plans.Stats()}
}

// shutdown closes the coordinators as a deployment would: Close releases
// whatever is held. It returns what failed.
func (d *demoRun) shutdown(ctx context.Context) []error {
	var closeErrs []error
	for _, w := range d.workers {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := w.c.Close(cctx); err != nil {
			closeErrs = append(closeErrs, fmt.Errorf("%s: %w", w.owner, err))
		}
		ccancel()
	}
	return closeErrs
}

// summary counts what the run did.
func (d *demoRun) summary(elapsed time.Duration) Summary {
	cfg := &d.cfg
	sum := Summary{Workers: cfg.Workers, Duration: elapsed, Plans: cfg.Plans, Projects: cfg.Projects, PlansPerProject: cfg.PlansPerProject,
		TTL: cfg.TTL, Chaos: cfg.Chaos, Seed: d.seed, Prefix: cfg.Store.Layout().Prefix()}
	sum.fill(d.rec.Stats(), d.plans.Stats())
	for _, w := range append(slices.Clone(d.workers), d.candidates...) {
		sum.LeasesLost += w.lost
		sum.ChaosPauses += w.pauses
		sum.TermsLost += w.termsLost
	}
	sum.Waits = int(gatherCount(d.reg, "lockcoord_wait_duration_seconds"))
	if lost := int(gatherCount(d.reg, "lockcoord_leases_lost_total")); lost > sum.LeasesLost {
		sum.LeasesLost = lost
	}
	return sum
}

// check adds the invariants to sum; the error is a failure to check.
func (d *demoRun) check(ctx context.Context, sum *Summary, closeErrs []error) error {
	rs, ps := d.rec.Stats(), d.plans.Stats()
	sum.check("never two holders in a critical section", ps.Overlaps == 0,
		fmt.Sprintf("%d overlaps", ps.Overlaps), ps.Violations)
	sum.check("tokens strictly increasing per resource", len(rs.TokenViolations) == 0,
		fmt.Sprintf("%d acquisitions on %d resources", rs.Acquired, rs.Resources), rs.TokenViolations)
	// the checks run also when ctx ended the demo early (Ctrl-C)
	pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*d.cfg.TTL+30*time.Second)
	defer pcancel()
	left, err := leftovers(pctx, d.cfg.Store, d.cfg.TTL)
	if err != nil {
		return fmt.Errorf("demo: look for leases left behind: %w", err)
	}
	// the outbox's own count: a refused AcquireAll gives back what it took,
	// events the store wrote without a call of the recorder's
	if sum.EventsWritten, err = StreamEntries(pctx, d.cfg.Store); err != nil {
		return fmt.Errorf("demo: count the audit events: %w", err)
	}
	sum.check("no lease left behind", len(left) == 0 && len(closeErrs) == 0,
		fmt.Sprintf("%d leases in Redis after shutdown", len(left)), append(left, errStrings(closeErrs)...))
	sum.check("plan transitions in order (no lost update)", ps.OutOfOrder == 0,
		fmt.Sprintf("%d transitions, %d out of order", ps.Transitions, ps.OutOfOrder), nil)
	sum.check("never an exclusive project holder while a plan of it is held", ps.ExclusiveOverlaps == 0,
		fmt.Sprintf("%d project-wide jobs, %d overlaps", ps.ProjectJobs, ps.ExclusiveOverlaps), nil)
	sum.check("never more holders than permits", ps.CapOverflows == 0,
		fmt.Sprintf("at most %d of %d plans per project at once, %d over", ps.MaxHolders, d.cfg.PlansPerProject, ps.CapOverflows), nil)
	if rs.Errors > 0 {
		sum.check("store calls succeeded", false, fmt.Sprintf("%d store calls failed", rs.Errors), rs.ErrorSamples)
	}
	return nil
}

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

// leftovers lists the lease keys of the store's prefix still in Redis.
// Leases lost to a freeze expire within a TTL of their last renewal; it
// waits for them up to two TTLs.
func leftovers(ctx context.Context, s *redisstore.Store, ttl time.Duration) ([]string, error) {
	deadline := time.Now().Add(2 * ttl)
	for {
		keys, err := LeaseKeys(ctx, s)
		if err != nil || len(keys) == 0 || time.Now().After(deadline) {
			return keys, err
		}
		if !sleep(ctx, ttl/20) {
			return keys, ctx.Err()
		}
	}
}

// StreamEntries counts the entries of the store's event streams (XLEN of
// each partition's, in one pipeline): every lease change the store wrote,
// as long as nothing trimmed the streams.
func StreamEntries(ctx context.Context, s *redisstore.Store) (int, error) {
	lens := make([]*redis.IntCmd, s.Layout().Partitions())
	_, err := s.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range lens {
			lens[i] = p.XLen(ctx, s.Layout().StreamKey(i))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range lens {
		n += int(c.Val())
	}
	return n, nil
}

// LeaseKeys returns the lease keys of the store's prefix (SCAN, on every
// master of a Cluster).
func LeaseKeys(ctx context.Context, s *redisstore.Store) ([]string, error) {
	pattern := s.Layout().LeaseKeyPattern("")
	var keys []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return it.Err()
	}
	if cc, ok := s.Client().(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			var local []string
			it := n.Scan(ctx, 0, pattern, 500).Iterator()
			for it.Next(ctx) {
				local = append(local, it.Val())
			}
			mu.Lock()
			keys = append(keys, local...)
			mu.Unlock()
			return it.Err()
		})
		return keys, err
	}
	return keys, scan(ctx, s.Client())
}

// gatherCount sums the sample counts (histograms) or values (counters) of
// the metric family name.
func gatherCount(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += metricValue(m)
		}
	}
	return n
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}
