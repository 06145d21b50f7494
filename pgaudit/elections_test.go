package pgaudit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// Diagnose reports the elections whose last term ended longer ago than
// the vacancy budget and that nobody leads since, longest vacant first.
func TestDiagnoseVacantElections(t *testing.T) {
	pg, rd := newDB(t), newMini(t)
	ctx := context.Background()
	m := mirror(pg.pool, rd)
	ended := func(name, owner string) coordinator.Lease {
		l := rd.mustAcquire(t, coordinator.Election(name), owner, time.Hour)
		if err := rd.release(t, coordinator.Election(name), owner, true); err != nil {
			t.Fatal(err)
		}
		return l
	}
	sched := ended("sched", "w1")
	rd.advance(time.Second)
	ended("old", "w3")
	rd.mustAcquire(t, coordinator.Election("db"), "w2", time.Hour) // led
	rd.mustAcquire(t, coordinator.Plan("sched"), "w9", time.Hour)  // not an election
	rd.advance(2 * time.Minute)
	ended("new", "w4") // vacant for less than the budget
	drain(t, m)

	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.VacantCount != 2 || len(r.Vacant) != 1 || r.VacancyBudget != pgaudit.DefaultVacancyBudget {
		t.Fatalf("vacant %d %+v (budget %s), want 2, sched listed", r.VacantCount, r.Vacant, r.VacancyBudget)
	}
	v := r.Vacant[0]
	if v.Election != "sched" || v.LastLeader != "w1" || v.LastTerm != sched.Token || v.Ended != "released" || r.At.Sub(v.Since) < 2*time.Minute {
		t.Fatalf("vacancy %+v, want sched's, ended by w1's release of term %d", v, sched.Token)
	}
	if r.Healthy(pgaudit.DefaultThresholds()) != true {
		t.Fatalf("vacancies are reported, not judged, by default: %v", r.Problems(pgaudit.DefaultThresholds()))
	}
	th := pgaudit.DefaultThresholds()
	th.MaxVacant = 0
	if p := strings.Join(r.Problems(th), "; "); !strings.Contains(p, "2 elections without a leader for longer than 1m0s") {
		t.Fatalf("problems %q", p)
	}
	var table, js bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"elections vacant longer than 1m0s  2", "ELECTIONS WITHOUT A LEADER FOR LONGER THAN 1m0s", "sched", "… and 1 more"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if !strings.Contains(js.String(), `"last_term": "`) || !strings.Contains(js.String(), `"vacancy_budget_ms": 60000`) {
		t.Errorf("JSON:\n%s", js.String())
	}

	// a new term ends the vacancy; the check can be switched off
	rd.mustAcquire(t, coordinator.Election("sched"), "w5", time.Hour)
	drain(t, m)
	if r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{}); err != nil || r.VacantCount != 1 || r.Vacant[0].Election != "old" {
		t.Fatalf("after a new term: %+v, %v", r.Vacant, err)
	}
	if r, err = m.Diagnose(ctx, pgaudit.DiagnoseOptions{VacancyBudget: -1}); err != nil || r.VacantCount != 0 || r.VacancyBudget != 0 {
		t.Fatalf("check off: %d, %v", r.VacantCount, err)
	}
}
