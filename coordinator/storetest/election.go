package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// nextLeader returns the next leader ch reports, failing t when none
// comes within eventWait.
func nextLeader(t *testing.T, ch <-chan coordinator.Leader) coordinator.Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe ended")
		}
		return l
	case <-time.After(eventWait):
		t.Fatal("no leader came")
	}
	return coordinator.Leader{}
}

// leading runs Lead in a goroutine; started gets the term once fn runs,
// closing stop makes fn return, and done gets Lead's error.
type leading struct {
	started chan *coordinator.Term
	stop    chan struct{}
	done    chan error
}

func lead(ctx context.Context, c *coordinator.Coordinator, election, candidate, value string) *leading {
	l := &leading{started: make(chan *coordinator.Term, 1), stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		l.done <- c.Lead(ctx, election, candidate, value, func(ctx context.Context, term *coordinator.Term) error {
			l.started <- term
			select {
			case <-l.stop:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	}()
	return l
}

func (l *leading) term(t *testing.T) *coordinator.Term {
	t.Helper()
	select {
	case term := <-l.started:
		return term
	case err := <-l.done:
		t.Fatalf("Lead ended before leading: %v", err)
	case <-time.After(eventWait):
		t.Fatal("no term began")
	}
	return nil
}

func (l *leading) resign(t *testing.T) {
	t.Helper()
	close(l.stop)
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatalf("Lead: %v", err)
		}
	case <-time.After(eventWait):
		t.Fatal("Lead did not return")
	}
}

// testElectionTerms: an observer sees the vacancy, the first term, the
// vacancy when it resigns and the next term, which a waiting candidate
// takes; terms grow; Leader reports the leader and ErrNotHeld when
// vacant.
func testElectionTerms(t *testing.T, h Harness) {
	ctx, s, c := setup(t, h)
	needMeta(t, c)
	c2, c3 := coordinator.New(s), coordinator.New(s)
	defer func() { _ = c2.Close(context.Background()) }()
	obs, err := c3.Observe(ctx, "sched")
	if err != nil {
		t.Fatal(err)
	}
	if l := nextLeader(t, obs); !l.Vacant() || l.Election != "sched" {
		t.Fatalf("first leader %+v, want a vacancy", l)
	}
	if _, err := c.Leader(ctx, "sched"); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Leader of a vacant office: %v", err)
	}
	a := lead(ctx, c, "sched", "a", "addr-a")
	ta := a.term(t)
	if ta.Candidate != "a" || ta.Value != "addr-a" || ta.Token == 0 || ta.Election != "sched" {
		t.Fatalf("term %+v", ta.Leader)
	}
	if l := nextLeader(t, obs); l.Candidate != "a" || l.Token != ta.Token || l.Value != "addr-a" || l.Gap {
		t.Fatalf("observed %+v, want a's term %d", l, ta.Token)
	}
	if l, err := c2.Leader(ctx, "sched"); err != nil || l.Candidate != "a" || l.Token != ta.Token {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	b := lead(ctx, c2, "sched", "b", "addr-b") // campaigns: waits for a
	a.resign(t)
	tb := b.term(t)
	if tb.Token <= ta.Token || tb.Candidate != "b" {
		t.Fatalf("b's term %+v after a's %d", tb.Leader, ta.Token)
	}
	if l := nextLeader(t, obs); !l.Vacant() || l.Token != ta.Token {
		t.Fatalf("observed %+v, want the vacancy after term %d", l, ta.Token)
	}
	if l := nextLeader(t, obs); l.Candidate != "b" || l.Token != tb.Token || l.Value != "addr-b" {
		t.Fatalf("observed %+v, want b's term %d", l, tb.Token)
	}
	b.resign(t)
	if l := nextLeader(t, obs); !l.Vacant() || l.Token != tb.Token {
		t.Fatalf("observed %+v, want the vacancy after term %d", l, tb.Token)
	}
	if err := c3.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for range obs { //nolint:revive // Close ends Observe
	}
}

// testElectionProclaim: Proclaim changes the value in the term, observers
// see it with the same token, and a bad value changes nothing.
func testElectionProclaim(t *testing.T, h Harness) {
	ctx, _, c := setup(t, h)
	needMeta(t, c)
	obs, err := c.Observe(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	nextLeader(t, obs) // vacant
	a := lead(ctx, c, "cfg", "a", "v1")
	term := a.term(t)
	if l := nextLeader(t, obs); l.Value != "v1" {
		t.Fatalf("observed %+v", l)
	}
	if err := term.Proclaim(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := term.Proclaim(ctx, ""); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Proclaim(\"\"): %v", err)
	}
	if err := term.Proclaim(ctx, "bad\x01"); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Proclaim of a control character: %v", err)
	}
	if l := nextLeader(t, obs); l.Value != "v2" || l.Token != term.Token || l.Candidate != "a" || term.Value != "v2" {
		t.Fatalf("observed %+v after Proclaim, term %+v", l, term.Leader)
	}
	if l, err := c.Leader(ctx, "cfg"); err != nil || l.Value != "v2" {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	if l, err := c.Inspect(ctx, coordinator.Election("cfg")); err != nil || l.Count != 1 {
		t.Fatalf("the office after Proclaim: %+v, %v; want one hold", l, err)
	}
	a.resign(t)
	if l := nextLeader(t, obs); !l.Vacant() {
		t.Fatalf("observed %+v, want a vacancy", l)
	}
}

// needMeta skips t when the store keeps no lease metadata, which holds
// a leader's value.
func needMeta(t *testing.T, c *coordinator.Coordinator) {
	t.Helper()
	r := coordinator.Resource{Type: "probe", ID: "meta"}
	_, err := c.Acquire(t.Context(), r, "probe", coordinator.Meta("m"))
	if errors.Is(err, coordinator.ErrUnsupported) {
		t.Skip("the store keeps no lease metadata, the leader's value: ", err)
	}
	need(t)(c.Release(t.Context(), r, "probe"))
}
