package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// newStore returns a store on a miniredis whose TTLs run on the wall
// clock, as the demo's embedded one does.
func newStore(t *testing.T) (*miniredis.Miniredis, *redisstore.Store) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.ClockTTL(true)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return mr, redisstore.New(c, redisstore.WithPrefix("demo-test"))
}

func streamEvents(t *testing.T, mr *miniredis.Miniredis, s *redisstore.Store) int {
	t.Helper()
	n := 0
	for p := range s.Layout().Partitions() {
		if !mr.Exists(s.Layout().StreamKey(p)) {
			continue
		}
		entries, err := mr.Stream(s.Layout().StreamKey(p))
		if err != nil {
			t.Fatal(err)
		}
		n += len(entries)
	}
	return n
}

func TestRun(t *testing.T) {
	mr, s := newStore(t)
	var progress bytes.Buffer
	// a TTL of 500ms leaves a 50ms safety margin, enough for a loaded
	// machine under -race to hand the loss signal on in time; the run ends
	// once 6 plans completed (a second or two here), however slow the
	// machine, within a minute
	sum, err := Run(context.Background(), Config{Store: s, Workers: 4, Duration: time.Minute, Completed: 6,
		Plans: 6, Projects: 2, TTL: 500 * time.Millisecond, Seed: 1, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || len(sum.Invariants) != 6 {
		t.Fatalf("invariants: %+v", sum.Invariants)
	}
	if sum.PlansCompleted == 0 || sum.Acquisitions == 0 || sum.Renewals == 0 || sum.Reentries == 0 ||
		sum.FencedAccepted == 0 || sum.AcquireP50 <= 0 || sum.AcquireP99 < sum.AcquireP50 {
		t.Fatalf("summary %+v", sum)
	}
	// an elected scheduler assigned the subplans: plans completed
	if sum.Terms == 0 || sum.HandOvers > sum.Terms-1 {
		t.Fatalf("scheduler terms %d, hand-overs %d", sum.Terms, sum.HandOvers)
	}
	// leases may be lost without chaos on a slow machine (a renewal later
	// than the safety margin): the invariants above must hold all the same
	if sum.ChaosPauses != 0 {
		t.Fatalf("without chaos: %d pauses", sum.ChaosPauses)
	}
	// every change the recorder counted has its event in the outbox
	if got := streamEvents(t, mr, s); got != sum.EventsWritten {
		t.Fatalf("%d events in the streams, the summary says %d", got, sum.EventsWritten)
	}
	// the recorder saw every call's event; a refused AcquireAll's give-backs
	// are the store's own, which it does not see
	if rs := sum.EventsWritten; rs < sum.Acquisitions+sum.Reentries+sum.Renewals+sum.Releases {
		t.Fatalf("%d events in the streams, fewer than the %d calls the recorder counted", rs,
			sum.Acquisitions+sum.Reentries+sum.Renewals+sum.Releases)
	}
	if !strings.Contains(progress.String(), "demo: ") || !strings.Contains(progress.String(), "completed") {
		t.Fatalf("progress %q", progress.String())
	}
	var table bytes.Buffer
	if err := sum.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acquisitions", "re-entries", "conflicts", "waits", "renewals",
		"acquire latency p99", "fenced writes rejected", "ok    never two holders", "all invariants held"} {
		if !strings.Contains(table.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, table.String())
		}
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["ok"] != true || m["acquisitions"].(float64) != float64(sum.Acquisitions) ||
		m["ttl_ms"].(float64) != 500 || len(m["invariants"].([]any)) != 6 {
		t.Fatalf("json %s: %v", b, err)
	}
}

func TestRunChaosRejectsStaleWrites(t *testing.T) {
	// a pause shows up as a rejected write only when the paused worker
	// writes after another took the lease; on a loaded machine a short run
	// may not get there (a worker may not even reach a step that pauses
	// before the pauses stop, 2 TTLs before the end), so up to five runs,
	// each of which must keep every invariant
	var pauses, lost, rejected, runs, terms, handOvers int
	for seed := int64(7); seed < 12 && rejected == 0; seed++ {
		_, s := newStore(t)
		sum, err := Run(context.Background(), Config{Store: s, Workers: 8, Duration: 4 * time.Second,
			Plans: 4, Projects: 1, TTL: 500 * time.Millisecond, Chaos: true, Seed: uint64(seed)})
		if err != nil {
			t.Fatal(err)
		}
		if !sum.OK() {
			var b bytes.Buffer
			_ = sum.WriteTable(&b)
			t.Fatalf("invariants failed under chaos:\n%s", b.String())
		}
		runs++
		pauses += sum.ChaosPauses
		lost += sum.LeasesLost
		rejected += sum.FencedRejected
		terms += sum.Terms
		handOvers += sum.HandOvers
	}
	if pauses == 0 || lost == 0 || rejected == 0 {
		t.Fatalf("in %d runs: %d pauses, %d leases lost, %d stale writes rejected; want each above 0", runs, pauses, lost, rejected)
	}
	t.Logf("in %d runs: %d pauses, %d leases lost, %d stale writes rejected, %d scheduler terms, %d hand-overs",
		runs, pauses, lost, rejected, terms, handOvers)
}

func TestSummaryFailure(t *testing.T) {
	var s Summary
	s.Check("a", true, "fine")
	s.Skip("b", "not asked")
	if !s.OK() {
		t.Fatal("skipped counted as failed")
	}
	s.check("c", false, "broken", []string{"w1 and w2 at once"})
	var b bytes.Buffer
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if s.OK() || !strings.Contains(b.String(), "FAIL  c (broken)") || !strings.Contains(b.String(), "w1 and w2 at once") ||
		!strings.Contains(b.String(), "--    b (not asked)") {
		t.Fatalf("table:\n%s", b.String())
	}
}

func TestConfig(t *testing.T) {
	_, s := newStore(t)
	for _, c := range []Config{
		{Store: s, Workers: -1}, {Store: s, Plans: -2}, {Store: s, Plans: 2, Projects: 3},
		{Store: s, TTL: time.Millisecond}, {Store: s, Duration: -time.Second}, {Store: s, Completed: -1},
		{Store: s, Chaos: true, Duration: time.Second, TTL: time.Second}, {Store: s, Subplans: 101},
		{Store: s, Owner: "bad\x00"}, {Store: s, Jobs: 1}, {Store: s, Completed: 1, Jobs: -1},
		{Store: s, PlansPerProject: -1}, {Store: s, PlansPerProject: 1001},
	} {
		if _, err := Run(context.Background(), c); !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("%+v: %v, want ErrInvalid", c, err)
		}
	}
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Fatal("no store accepted")
	}
	// Redis down: an error before any worker starts
	mr, s2 := newStore(t)
	mr.Close()
	if _, err := Run(context.Background(), Config{Store: s2, Duration: time.Second}); err == nil {
		t.Fatal("a demo ran without Redis")
	}
}

func TestRunCancelled(t *testing.T) {
	_, s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, Config{Store: s, Workers: 3, Duration: time.Minute, TTL: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("a demo ended early: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the demo took %s to stop", d)
	}
	if !sum.OK() || sum.Duration > 10*time.Second {
		t.Fatalf("summary %+v", sum)
	}
}

func TestProgressOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, true, 10*time.Second, time.Now().Add(-5*time.Second))
	p.report(progressLine{rec: RecorderStats{Acquired: 7}, store: StoreStats{Completed: 2}}, false)
	if s := b.String(); !strings.HasPrefix(s, "\r[============            ]") || !strings.Contains(s, "completed 2") ||
		!strings.Contains(s, "acquired 7") || strings.HasSuffix(s, "\n") {
		t.Fatalf("bar %q", s)
	}
	b.Reset()
	p.done(progressLine{})
	if s := b.String(); !strings.HasPrefix(s, "\r[========================] 100%") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("final bar %q", s)
	}
}
