package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Invariant is one property the demo checked.
type Invariant struct {
	Name    string   `json:"name"`
	OK      bool     `json:"ok"`
	Skipped bool     `json:"skipped,omitempty"`
	Detail  string   `json:"detail"`
	Errors  []string `json:"errors,omitempty"` // the first violations
}

// Summary is what a demo run did and whether its invariants held.
type Summary struct {
	Workers  int           `json:"workers"`
	Duration time.Duration `json:"-"`
	Plans    int           `json:"plans"`
	Projects int           `json:"projects"`
	// PlansPerProject is the cap of plans of one project in transition at
	// once (the Permits of the project's shared hold).
	PlansPerProject int           `json:"plans_per_project"`
	TTL             time.Duration `json:"-"`
	Chaos           bool          `json:"chaos"`
	Seed            uint64        `json:"seed,string"` // a decimal string: exact in JavaScript and jq
	Prefix          string        `json:"prefix"`
	Redis           string        `json:"redis"`
	// Postgres (host:port/database) and Schema, the demo's own, are set
	// when the demo mirrored its events; SchemaKept: not dropped at the end.
	Postgres   string `json:"postgres,omitempty"`
	Schema     string `json:"schema,omitempty"`
	SchemaKept bool   `json:"schema_kept,omitempty"`

	PlansCompleted int           `json:"plans_completed"`
	Transitions    int           `json:"transitions"`
	Acquisitions   int           `json:"acquisitions"`
	Reentries      int           `json:"reentries"`
	Conflicts      int           `json:"conflicts"`
	Waits          int           `json:"waits"`
	Renewals       int           `json:"renewals"`
	Releases       int           `json:"releases"`
	LeasesLost     int           `json:"leases_lost"`
	AcquireP50     time.Duration `json:"-"`
	AcquireP99     time.Duration `json:"-"`
	FencedAccepted int           `json:"fenced_writes_accepted"`
	FencedRejected int           `json:"fenced_writes_rejected"`
	ChaosPauses    int           `json:"chaos_pauses"`
	Terms          int           `json:"scheduler_terms"`      // terms of the elected scheduler
	HandOvers      int           `json:"scheduler_hand_overs"` // terms begun by another scheduler than the last
	TermsLost      int           `json:"scheduler_terms_lost"` // terms that ended by a loss, not a resignation
	ProjectJobs    int           `json:"project_jobs"`         // project-wide jobs under an exclusive project lease
	MaxPlanHolders int           `json:"max_plan_holders"`     // most plans of one project held at once
	EventsWritten  int           `json:"events_written"`
	LedgerRows     *int          `json:"ledger_rows,omitempty"`

	Invariants []Invariant `json:"invariants"`
}

func (s *Summary) fill(rs RecorderStats, ps StoreStats) {
	s.PlansCompleted, s.Transitions = ps.Completed, ps.Transitions
	s.Acquisitions, s.Reentries, s.Conflicts = rs.Acquired, rs.Reentered, rs.Conflicts
	s.Renewals, s.Releases = rs.Renewed, rs.Released+rs.Decrements
	s.AcquireP50, s.AcquireP99 = rs.P50, rs.P99
	s.FencedAccepted, s.FencedRejected = ps.Accepted, ps.Rejected
	s.EventsWritten = rs.Events()
	s.Terms, s.HandOvers = ps.Terms, ps.HandOvers
	s.ProjectJobs, s.MaxPlanHolders = ps.ProjectJobs, ps.MaxHolders
}

func (s *Summary) check(name string, ok bool, detail string, errs []string) {
	s.Invariants = append(s.Invariants, Invariant{Name: name, OK: ok, Detail: detail, Errors: errs})
}

// Check adds an invariant checked outside Run (the ledger, with Postgres).
func (s *Summary) Check(name string, ok bool, detail string) { s.check(name, ok, detail, nil) }

// Skip adds an invariant that was not checked, and why.
func (s *Summary) Skip(name, why string) {
	s.Invariants = append(s.Invariants, Invariant{Name: name, OK: true, Skipped: true, Detail: why})
}

// OK reports whether every invariant held.
func (s Summary) OK() bool {
	for _, inv := range s.Invariants {
		if !inv.OK {
			return false
		}
	}
	return true
}

// MarshalJSON adds the durations in milliseconds and the overall result.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	return json.Marshal(struct {
		plain
		DurationMS   float64 `json:"duration_ms"`
		TTLMS        float64 `json:"ttl_ms"`
		AcquireP50MS float64 `json:"acquire_p50_ms"`
		AcquireP99MS float64 `json:"acquire_p99_ms"`
		OK           bool    `json:"ok"`
	}{plain(s), ms(s.Duration), ms(s.TTL), ms(s.AcquireP50), ms(s.AcquireP99), s.OK()})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteTable prints the summary for people.
func (s Summary) WriteTable(w io.Writer) error {
	chaos := "off"
	if s.Chaos {
		chaos = "on"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lockcoord demo: %d workers for %s, %d plans in %d projects (at most %d moving per project), TTL %s, chaos %s\n",
		s.Workers, s.Duration.Round(time.Millisecond), s.Plans, s.Projects, s.PlansPerProject, s.TTL, chaos)
	fmt.Fprintf(&b, "Redis: %s, key prefix %q, seed %d\n", s.Redis, s.Prefix, s.Seed)
	if s.Schema != "" {
		fate := "dropped at the end"
		if s.SchemaKept {
			fate = "kept: DROP SCHEMA " + s.Schema + " CASCADE removes it"
		}
		fmt.Fprintf(&b, "Postgres: %s, schema %s of the demo's own (%s)\n", s.Postgres, s.Schema, fate)
	}
	b.WriteString("\n")
	s.writeCounts(&b)
	b.WriteString("\ninvariants\n")
	for _, inv := range s.Invariants {
		mark := "ok  "
		switch {
		case inv.Skipped:
			mark = "--  "
		case !inv.OK:
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %s (%s)\n", mark, inv.Name, inv.Detail)
		for _, e := range inv.Errors {
			fmt.Fprintf(&b, "          %s\n", e)
		}
	}
	if s.OK() {
		b.WriteString("\nall invariants held\n")
	} else {
		b.WriteString("\nAN INVARIANT FAILED\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCounts prints the counts of the table, one per row.
func (s Summary) writeCounts(b *strings.Builder) {
	row := func(name string, v any) { fmt.Fprintf(b, "  %-24s %10v\n", name, v) }
	row("plans completed", s.PlansCompleted)
	row("transitions", s.Transitions)
	row("acquisitions", s.Acquisitions)
	row("re-entries", s.Reentries)
	row("conflicts", s.Conflicts)
	row("waits", s.Waits)
	row("renewals", s.Renewals)
	row("releases", s.Releases)
	row("leases lost", s.LeasesLost)
	row("acquire latency p50", fmtLatency(s.AcquireP50))
	row("acquire latency p99", fmtLatency(s.AcquireP99))
	row("fenced writes accepted", s.FencedAccepted)
	row("fenced writes rejected", s.FencedRejected)
	row("chaos pauses", s.ChaosPauses)
	row("scheduler terms", s.Terms)
	row("scheduler hand-overs", s.HandOvers)
	row("scheduler terms lost", s.TermsLost)
	row("project-wide jobs", s.ProjectJobs)
	row("most plans per project", fmt.Sprintf("%d of %d", s.MaxPlanHolders, s.PlansPerProject))
	row("audit events written", s.EventsWritten)
	if s.LedgerRows != nil {
		row("ledger rows", *s.LedgerRows)
	}
}

func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
