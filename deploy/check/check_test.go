package check

import (
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

const (
	rulesFile     = "../prometheus/alerts.yml"
	dashboardFile = "../grafana/lockcoord.json"
)

// pending are metrics announced by work in flight, named by the rules
// and the dashboard before the library exports them. A name here that the
// library exports fails the test: take it out of the list.
var pending = map[string]string{}

// descRecorder is a prometheus.Registerer that records the fully
// qualified name of every metric its collectors describe.
type descRecorder struct {
	mu    sync.Mutex
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	d.mu.Lock()
	defer d.mu.Unlock()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *descRecorder) Unregister(prometheus.Collector) bool { return true }

// exported returns the names of the metrics lockcoord's packages
// register, as their collectors describe them: the coordinator's, the
// store's and the mirror's.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	rec := &descRecorder{names: map[string]bool{}}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	store := redisstore.New(client, redisstore.WithMetrics(rec))
	c := coordinator.New(store, coordinator.WithMetrics(rec))
	defer c.Orphan()
	pool, err := pgxpool.New(t.Context(), "postgres://127.0.0.1:1/none") // never dialled
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pgaudit.NewMirror(pool, store, pgaudit.WithMetrics(rec))
	if len(rec.names) < 10 {
		t.Fatalf("the library described %d metrics: %v", len(rec.names), rec.names)
	}
	return rec.names
}

// metricOf returns the metric a series name belongs to: a histogram's
// _bucket, _sum and _count series are the histogram's.
func metricOf(series string, known map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suf); ok && known[base] {
			return base
		}
	}
	return series
}

// names returns the metric names an expression selects.
func names(t *testing.T, p parser.Parser, where, expr string) []string {
	t.Helper()
	// Grafana's own interval variable, for the parser
	e, err := p.ParseExpr(strings.ReplaceAll(expr, "$__rate_interval", "5m"))
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return nil
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%s: %q names no metric", where, expr)
	}
	return out
}

// checkNames fails t for each name that lockcoord does not export.
func checkNames(t *testing.T, where string, got []string, known map[string]bool) {
	t.Helper()
	for _, n := range got {
		m := metricOf(n, known)
		if !known[m] && pending[m] == "" {
			t.Errorf("%s names %s, which lockcoord does not export (it exports %v)", where, n, slices.Sorted(mapsKeys(known)))
		}
	}
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestPendingNamesAreNotExported(t *testing.T) {
	known := exported(t)
	for n, why := range pending {
		if known[n] {
			t.Errorf("%s (%s) is exported now: take it out of pending", n, why)
		}
	}
}

// TestAlertingRules: the rules parse and validate with Prometheus's own
// parser (rulefmt, as promtool check rules), every alert has a severity,
// a summary and a description, and names only lockcoord's metrics.
func TestAlertingRules(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	known := exported(t)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := rulesFile + ": " + r.Alert
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("%s: a rule without an alert name, or a name used twice", where)
			}
			seen[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a severity label, a summary and a description", where)
			}
			checkNames(t, where, names(t, p, where, r.Expr), known)
		}
	}
	// what the issue asks alerts for
	for _, m := range []string{"lockcoord_leases_lost_total", "lockcoord_renew_failures_total",
		"lockcoord_mirror_lag_seconds", "lockcoord_mirror_events_dead_lettered_total", "lockcoord_redis_config_unsafe"} {
		if !strings.Contains(mustRead(t, rulesFile), m) {
			t.Errorf("no alert on %s", m)
		}
	}
}

// dashboard is what the test reads of the Grafana dashboard.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboard: the dashboard is JSON with a panel per subject of the
// issue, each query parses as PromQL and names only lockcoord's metrics.
func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(mustRead(t, dashboardFile)), &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard %q (uid %q) with %d panels", d.Title, d.UID, len(d.Panels))
	}
	p := parser.NewParser(parser.Options{})
	known := exported(t)
	used := map[string]bool{}
	for _, panel := range d.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, tg := range panel.Targets {
			where := dashboardFile + ": panel " + panel.Title
			got := names(t, p, where, tg.Expr)
			checkNames(t, where, got, known)
			for _, n := range got {
				used[metricOf(n, known)] = true
			}
		}
	}
	for _, m := range []string{"lockcoord_leases_held", "lockcoord_acquire_duration_seconds", "lockcoord_conflicts_total",
		"lockcoord_wait_duration_seconds", "lockcoord_renew_failures_total", "lockcoord_leases_lost_total",
		"lockcoord_mirror_lag_seconds", "lockcoord_mirror_events_dead_lettered_total", "lockcoord_redis_config_unsafe"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// TestDocsListThePanels: docs/operations.md lists every panel of the
// dashboard by its title.
func TestDocsListThePanels(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(mustRead(t, dashboardFile)), &d); err != nil {
		t.Fatal(err)
	}
	docs := mustRead(t, "../../docs/operations.md")
	for _, panel := range d.Panels {
		if !strings.Contains(docs, "**"+panel.Title+"**") {
			t.Errorf("docs/operations.md does not list the panel **%s**", panel.Title)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
