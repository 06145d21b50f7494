package pgaudit

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// DefaultVacancyBudget is how long an election may stay without a leader
// before Diagnose reports it (DiagnoseOptions.VacancyBudget).
const DefaultVacancyBudget = time.Minute

// Vacancy is an election (a resource of type coordinator.ElectionType)
// without a leader, as the mirror knows it: its office has no row in the
// locks table, and its last term ended at Since.
type Vacancy struct {
	Election   string
	Since      time.Time // Redis time the last term ended
	LastLeader string
	LastTerm   uint64
	Ended      string // how the last term ended: released, forced or expired
}

// vacancyQuery lists the elections of the ledger whose office has no row
// in the locks table and whose last term ended before $1, the longest
// vacant first. It walks the distinct election names on
// lock_events_resource_idx (a loose index scan: one probe per election,
// however long the ledger) and reads each one's last ending event by
// token, the last term.
const vacancyQuery = `
WITH RECURSIVE ids(id) AS (
	(SELECT resource_id FROM lock_events WHERE resource_type = $2 ORDER BY resource_id LIMIT 1)
	UNION ALL
	SELECT (SELECT e.resource_id FROM lock_events e
	        WHERE e.resource_type = $2 AND e.resource_id > ids.id ORDER BY e.resource_id LIMIT 1)
	FROM ids WHERE ids.id IS NOT NULL
)
SELECT ids.id, last.owner_id, last.token, last.at, last.event
FROM ids
CROSS JOIN LATERAL (
	SELECT owner_id, token, at, event FROM lock_events e
	WHERE e.resource_type = $2 AND e.resource_id = ids.id AND e.event IN ('released', 'forced', 'expired')
	ORDER BY e.token DESC, e.at DESC LIMIT 1) last
WHERE ids.id IS NOT NULL
  AND last.at < $1
  AND NOT EXISTS (SELECT 1 FROM locks l WHERE l.resource_type = $2 AND l.resource_id = ids.id)
ORDER BY last.at, ids.id`

// diagnoseVacancies counts the elections vacant since before before and
// lists the first limit of them.
func (m *Mirror) diagnoseVacancies(ctx context.Context, r *Report, before time.Time, limit int) error {
	rows, err := m.pool.Query(ctx, vacancyQuery, before, coordinator.ElectionType)
	if err != nil {
		return pgError("list vacant elections", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v     Vacancy
			token int64
		)
		if err := rows.Scan(&v.Election, &v.LastLeader, &token, &v.Since, &v.Ended); err != nil {
			return pgError("list vacant elections", err)
		}
		v.LastTerm = uint64(token)
		r.VacantCount++
		if limit < 0 || len(r.Vacant) < limit {
			r.Vacant = append(r.Vacant, v)
		}
	}
	if err := rows.Err(); err != nil {
		return pgError("list vacant elections", err)
	}
	return nil
}

// writeVacancies writes the table of vacant elections (none: nothing).
func (r Report) writeVacancies(w *tabwriter.Writer) {
	if len(r.Vacant) == 0 {
		return
	}
	fmt.Fprintf(w, "\nELECTIONS WITHOUT A LEADER FOR LONGER THAN %s\nELECTION\tLAST LEADER\tLAST TERM\tENDED\tSINCE\n", r.VacancyBudget)
	for _, v := range r.Vacant {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", v.Election, v.LastLeader, v.LastTerm, v.Ended, stamp(v.Since))
	}
	_ = w.Flush() // the final Flush reports a failing writer
}

// jsonVacancies is the vacant elections of a report's JSON.
type jsonVacancies struct {
	Count     int           `json:"count"`
	Elections []jsonVacancy `json:"elections"`
}

type jsonVacancy struct {
	Election   string    `json:"election"`
	LastLeader string    `json:"last_leader"`
	LastTerm   string    `json:"last_term"` // a decimal string, as every token
	Ended      string    `json:"ended"`
	Since      time.Time `json:"since"`
	VacantMS   int64     `json:"vacant_ms"`
}

func (r Report) vacancyJSON() jsonVacancies {
	j := jsonVacancies{Count: r.VacantCount, Elections: make([]jsonVacancy, 0, len(r.Vacant))}
	for _, v := range r.Vacant {
		j.Elections = append(j.Elections, jsonVacancy{Election: v.Election, LastLeader: v.LastLeader,
			LastTerm: strconv.FormatUint(v.LastTerm, 10), Ended: v.Ended, Since: v.Since.UTC(),
			VacantMS: r.At.Sub(v.Since).Milliseconds()})
	}
	return j
}
