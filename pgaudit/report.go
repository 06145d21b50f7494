package pgaudit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Exit codes of a diagnostics job (lockctl diagnostics).
const (
	ExitHealthy   = 0 // every threshold held
	ExitUnhealthy = 1 // a threshold was exceeded
	ExitFailed    = 2 // the diagnostics could not run (for the caller to use)
)

// Thresholds decide whether a Report is healthy. A negative value is not
// checked; zero allows none.
type Thresholds struct {
	MaxStale       int           // stale leases
	MaxMissing     int           // Redis leases missing from the mirror
	MaxLongHeld    int           // leases held longer than the budget
	MaxUndelivered int64         // entries not yet read by the mirror
	MaxPending     int64         // entries read, not yet acknowledged
	MaxLag         time.Duration // age of the oldest entry not acknowledged
	MaxDeadLetters int           // open dead letters (entries not applied)
	MaxVacant      int           // elections without a leader for longer than the vacancy budget
}

// DefaultThresholds are those of a monitoring job that pages for a mirror
// that is behind or has lost leases or events: no Redis lease missing from
// the mirror, no entry left unacknowledged for more than a minute, no open
// dead letter; stale and long-held leases and backlog sizes are reported,
// not judged.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxStale: -1, MaxMissing: 0, MaxLongHeld: -1, MaxUndelivered: -1, MaxPending: -1, MaxLag: time.Minute,
		MaxDeadLetters: 0, MaxVacant: -1}
}

// Problems lists the thresholds r exceeds, one sentence each.
func (r Report) Problems(t Thresholds) []string {
	var p []string
	check := func(got, limit int64, what string) {
		if limit >= 0 && got > limit {
			p = append(p, fmt.Sprintf("%d %s (at most %d allowed)", got, what, limit))
		}
	}
	check(int64(r.StaleCount), int64(t.MaxStale), "stale leases")
	check(int64(r.MissingCount), int64(t.MaxMissing), "Redis leases missing from the mirror")
	check(int64(r.LongHeldCount), int64(t.MaxLongHeld), "leases held longer than "+r.HoldBudget.String())
	check(r.Lag.Undelivered, t.MaxUndelivered, "stream entries not yet read by the mirror")
	check(r.Lag.Pending, t.MaxPending, "stream entries read but not acknowledged")
	check(int64(r.DeadLetterCount), int64(t.MaxDeadLetters), "dead letters: stream entries not applied (lockctl dead-letters)")
	check(int64(r.VacantCount), int64(t.MaxVacant), "elections without a leader for longer than "+r.VacancyBudget.String())
	if t.MaxLag >= 0 && r.Lag.Oldest > t.MaxLag {
		p = append(p, fmt.Sprintf("oldest unacknowledged entry is %s old (at most %s allowed)", r.Lag.Oldest, t.MaxLag))
	}
	for _, sc := range r.Redis {
		if pr := sc.Problem(); pr != "" {
			p = append(p, pr)
		}
	}
	return p
}

// Healthy reports whether r exceeds none of the thresholds.
func (r Report) Healthy(t Thresholds) bool { return len(r.Problems(t)) == 0 }

// ExitCode returns ExitHealthy or ExitUnhealthy.
func (r Report) ExitCode(t Thresholds) int {
	if r.Healthy(t) {
		return ExitHealthy
	}
	return ExitUnhealthy
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func more(w io.Writer, shown, count int) {
	if count > shown {
		fmt.Fprintf(w, "… and %d more\n", count-shown)
	}
}

// WriteTable writes r for a person: the summary, then the stale, missing
// and long-held leases and the lagging partitions, each as a table.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	budget := "off"
	if r.HoldBudget > 0 {
		budget = r.HoldBudget.String()
	}
	r.writeSummary(tw, budget)
	if len(r.Stale) > 0 {
		fmt.Fprintf(tw, "\nSTALE LEASES (expired, gone from Redis)\nRESOURCE\tOWNER\tTOKEN\tCOUNT\tACQUIRED AT\tEXPIRED AT\n")
		for _, s := range r.Stale {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Resource, s.Owner, s.Token, s.Count, stamp(s.AcquiredAt), stamp(s.ExpiresAt))
		}
		_ = tw.Flush() // the final Flush reports a failing writer
		more(w, len(r.Stale), r.StaleCount)
	}
	r.writeLeases(w, tw, "MISSING FROM THE MIRROR (held in Redis, no row of that token)", r.Missing, r.MissingCount)
	r.writeLeases(w, tw, "HELD LONGER THAN "+budget, r.LongHeld, r.LongHeldCount)
	r.writeVacancies(tw)
	more(w, len(r.Vacant), r.VacantCount)
	if len(r.DeadLetters) > 0 {
		fmt.Fprintf(tw, "\nDEAD LETTERS (entries kept in lock_dead_letters, not applied)\nPARTITION\tENTRY\tRECORDED AT\tREASON\n")
		for _, d := range r.DeadLetters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.Partition, d.StreamID, stamp(d.RecordedAt), d.Reason)
		}
		_ = tw.Flush() // the final Flush reports a failing writer
		more(w, len(r.DeadLetters), r.DeadLetterCount)
	}
	if len(r.Lag.Partitions) > 0 {
		fmt.Fprintf(tw, "\nLAG BY PARTITION\nPARTITION\tENTRIES\tNOT READ\tPENDING\tOLDEST\tGROUP\n")
		for _, p := range r.Lag.Partitions {
			group := "yes"
			if p.NoGroup {
				group = "missing"
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\n", p.Partition, p.Entries, p.Undelivered, p.Pending,
				p.Oldest.Round(time.Millisecond), group)
		}
	}
	return tw.Flush()
}

// writeSummary writes the header and the counts of a table.
func (r Report) writeSummary(tw io.Writer, budget string) {
	fmt.Fprintf(tw, "lockcoord diagnostics: prefix %s, %d partitions, group %s, redis time %s\n\n",
		r.Prefix, r.Partitions, r.Group, stamp(r.At))
	fmt.Fprintf(tw, "leases held (redis)\t%d\n", r.LeasesHeld)
	fmt.Fprintf(tw, "rows mirrored (postgres)\t%d\n", r.RowsMirrored)
	fmt.Fprintf(tw, "stale leases\t%d\n", r.StaleCount)
	fmt.Fprintf(tw, "missing from the mirror\t%d\n", r.MissingCount)
	fmt.Fprintf(tw, "held longer than %s\t%d\n", budget, r.LongHeldCount)
	fmt.Fprintf(tw, "stream entries\t%d\n", r.Lag.Entries)
	fmt.Fprintf(tw, "not yet read by the mirror\t%d\n", r.Lag.Undelivered)
	fmt.Fprintf(tw, "read, not acknowledged\t%d\n", r.Lag.Pending)
	fmt.Fprintf(tw, "oldest unacknowledged\t%s\n", r.Lag.Oldest.Round(time.Millisecond))
	fmt.Fprintf(tw, "dead letters (not applied)\t%d\n", r.DeadLetterCount)
	if r.VacancyBudget > 0 {
		fmt.Fprintf(tw, "elections vacant longer than %s\t%d\n", r.VacancyBudget, r.VacantCount)
	}
	for _, sc := range r.Redis {
		fmt.Fprintf(tw, "redis %s\tmaxmemory-policy %s, persistence %s\n", sc.Addr, cmp.Or(sc.Policy, "unknown"), sc.Persistence())
	}
}

// writeLeases writes a titled table of leases (none: nothing) and how
// many more there are.
func (r Report) writeLeases(w io.Writer, tw *tabwriter.Writer, title string, ls []coordinator.Lease, count int) {
	if len(ls) == 0 {
		return
	}
	fmt.Fprintf(tw, "\n%s\nRESOURCE\tOWNER\tTOKEN\tCOUNT\tACQUIRED AT\tHELD FOR\tEXPIRES AT\n", title)
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.Resource, l.Owner, l.Token, l.Count,
			stamp(l.AcquiredAt), r.At.Sub(l.AcquiredAt).Round(time.Second), stamp(l.ExpiresAt))
	}
	_ = tw.Flush() // the final Flush reports a failing writer
	more(w, len(ls), count)
}

// The JSON form of a report: times in RFC 3339 (UTC), durations in
// milliseconds, tokens as decimal strings (they may exceed 2^53).
type (
	jsonRow struct {
		Resource    string     `json:"resource"`
		Owner       string     `json:"owner"`
		Token       string     `json:"token"`
		Count       int        `json:"count"`
		AcquiredAt  time.Time  `json:"acquired_at"`
		RenewedAt   *time.Time `json:"renewed_at,omitempty"`
		ExpiresAt   time.Time  `json:"expires_at"`
		HeldMS      *int64     `json:"held_ms,omitempty"`
		LastEventID string     `json:"last_event_id,omitempty"`
	}
	jsonList struct {
		Count  int       `json:"count"`
		Leases []jsonRow `json:"leases"`
	}
	jsonPartition struct {
		Partition   int   `json:"partition"`
		Entries     int64 `json:"entries"`
		Undelivered int64 `json:"undelivered"`
		Pending     int64 `json:"pending"`
		OldestMS    int64 `json:"oldest_unacked_ms"`
		Group       bool  `json:"group"`
	}
	jsonLag struct {
		Entries     int64           `json:"entries"`
		Undelivered int64           `json:"undelivered"`
		Pending     int64           `json:"pending"`
		OldestMS    int64           `json:"oldest_unacked_ms"`
		Partitions  []jsonPartition `json:"partitions"`
	}
	jsonDeadLetter struct {
		Partition  int        `json:"partition"`
		StreamID   string     `json:"stream_id"`
		StreamKey  string     `json:"stream_key"`
		Group      string     `json:"group"`
		Fields     []jsonPair `json:"fields"`
		Reason     string     `json:"reason"`
		RecordedAt time.Time  `json:"recorded_at"`
	}
	jsonPair        [2]any
	jsonDeadLetters struct {
		Count   int              `json:"count"`
		Entries []jsonDeadLetter `json:"entries"`
	}
	jsonReport struct {
		At           time.Time                 `json:"at"`
		Prefix       string                    `json:"prefix"`
		Partitions   int                       `json:"partitions"`
		Group        string                    `json:"group"`
		HoldBudgetMS int64                     `json:"hold_budget_ms"`
		LeasesHeld   int                       `json:"leases_held"`
		RowsMirrored int                       `json:"rows_mirrored"`
		Stale        jsonList                  `json:"stale"`
		Missing      jsonList                  `json:"missing"`
		LongHeld     jsonList                  `json:"long_held"`
		Lag          jsonLag                   `json:"lag"`
		DeadLetters  jsonDeadLetters           `json:"dead_letters"`
		VacancyMS    int64                     `json:"vacancy_budget_ms"`
		Vacant       jsonVacancies             `json:"vacant_elections"`
		Redis        []redisstore.ServerConfig `json:"redis"`
	}
)

func (r Report) leaseRows(ls []coordinator.Lease) []jsonRow {
	out := make([]jsonRow, 0, len(ls))
	for _, l := range ls {
		held := r.At.Sub(l.AcquiredAt).Milliseconds()
		out = append(out, jsonRow{Resource: l.Resource.String(), Owner: l.Owner, Token: strconv.FormatUint(l.Token, 10),
			Count: l.Count, AcquiredAt: l.AcquiredAt.UTC(), ExpiresAt: l.ExpiresAt.UTC(), HeldMS: &held})
	}
	return out
}

// MarshalJSON encodes r with snake_case fields; see WriteJSON.
func (r Report) MarshalJSON() ([]byte, error) {
	j := jsonReport{At: r.At.UTC(), Prefix: r.Prefix, Partitions: r.Partitions, Group: r.Group,
		HoldBudgetMS: r.HoldBudget.Milliseconds(), LeasesHeld: r.LeasesHeld, RowsMirrored: r.RowsMirrored,
		Stale:    jsonList{Count: r.StaleCount, Leases: make([]jsonRow, 0, len(r.Stale))},
		Missing:  jsonList{Count: r.MissingCount, Leases: r.leaseRows(r.Missing)},
		LongHeld: jsonList{Count: r.LongHeldCount, Leases: r.leaseRows(r.LongHeld)},
		Lag: jsonLag{Entries: r.Lag.Entries, Undelivered: r.Lag.Undelivered, Pending: r.Lag.Pending,
			OldestMS: r.Lag.Oldest.Milliseconds(), Partitions: make([]jsonPartition, 0, len(r.Lag.Partitions))},
		Redis:     append([]redisstore.ServerConfig{}, r.Redis...),
		VacancyMS: r.VacancyBudget.Milliseconds(), Vacant: r.vacancyJSON(),
	}
	for _, s := range r.Stale {
		renewed := s.RenewedAt.UTC()
		j.Stale.Leases = append(j.Stale.Leases, jsonRow{Resource: s.Resource.String(), Owner: s.Owner,
			Token: strconv.FormatUint(s.Token, 10), Count: s.Count, AcquiredAt: s.AcquiredAt.UTC(),
			RenewedAt: &renewed, ExpiresAt: s.ExpiresAt.UTC(), LastEventID: s.LastEventID})
	}
	j.DeadLetters = jsonDeadLetters{Count: r.DeadLetterCount, Entries: make([]jsonDeadLetter, 0, len(r.DeadLetters))}
	for _, d := range r.DeadLetters {
		j.DeadLetters.Entries = append(j.DeadLetters.Entries, deadLetterJSON(d))
	}
	for _, p := range r.Lag.Partitions {
		j.Lag.Partitions = append(j.Lag.Partitions, jsonPartition{Partition: p.Partition, Entries: p.Entries,
			Undelivered: p.Undelivered, Pending: p.Pending, OldestMS: p.Oldest.Milliseconds(), Group: !p.NoGroup})
	}
	return json.Marshal(j)
}

// WriteJSON writes r as indented JSON: times in RFC 3339 (UTC), durations
// in milliseconds (fields ending in _ms), tokens as decimal strings.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// deadLetterJSON is d as JSON: each field name or value a string when it
// is UTF-8, else {"hex": "<its bytes>"}, as in the fields column.
func deadLetterJSON(d DeadLetter) jsonDeadLetter {
	j := jsonDeadLetter{Partition: d.Partition, StreamID: d.StreamID, StreamKey: d.StreamKey, Group: d.Group,
		Fields: make([]jsonPair, 0, len(d.Fields)), Reason: d.Reason, RecordedAt: d.RecordedAt.UTC()}
	for _, f := range d.Fields {
		j.Fields = append(j.Fields, jsonPair{jsonField(f.Name), jsonField(f.Value)})
	}
	return j
}

// MarshalJSON encodes d as the dead letters of a report's JSON are: names
// in snake_case, fields as [[name, value], ...] with {"hex": ...} for
// bytes that are not text.
func (d DeadLetter) MarshalJSON() ([]byte, error) {
	j := struct {
		jsonDeadLetter
		ResolvedAt *time.Time `json:"resolved_at,omitempty"`
		Resolution string     `json:"resolution,omitempty"`
	}{jsonDeadLetter: deadLetterJSON(d), Resolution: d.Resolution}
	if !d.ResolvedAt.IsZero() {
		at := d.ResolvedAt.UTC()
		j.ResolvedAt = &at
	}
	return json.Marshal(j)
}
