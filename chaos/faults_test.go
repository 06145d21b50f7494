package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
)

// fault is one fault injected during a run.
type fault struct {
	kind       string
	start, end time.Time
}

// faultPlan is a fault to inject and how long it lasts.
type faultPlan struct {
	kind string
	d    time.Duration
}

// TestRedisFaults is scenario 2: workers hold resources while Redis is
// killed (kill -9, then restarted), paused (CLIENT PAUSE), and the
// network to it is delayed, dropped, blackholed and cut. The history must
// be linearizable, no stale write accepted, and a holder whose lease ran
// out while Redis was unreachable told so before the lease's expiry.
// With appendonly the leases survive the kills, so no two live holders
// may ever overlap; without persistence a kill loses the leases (the
// known limit fencing covers). Modes are mixed (see sharedWorker): shared
// holders read, fenced, and never exceed their cap but for the known
// limits.
func TestRedisFaults(t *testing.T) {
	parallel(t)
	eachPersistence(t, redisFaults)
}

// eachPersistence runs scenario as subtests on a Redis without
// persistence and on one with appendonly (kill -9 then loses nothing
// acknowledged), in parallel at the short size.
func eachPersistence(t *testing.T, scenario func(t *testing.T, args []string, persistent bool)) {
	for _, mode := range []struct {
		name       string
		args       []string
		persistent bool
	}{
		{"no-persistence", nil, false},
		{"appendonly", []string{"--appendonly", "yes"}, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			parallel(t)
			scenario(t, mode.args, mode.persistent)
		})
	}
}

func redisFaults(t *testing.T, args []string, persistent bool) {
	var (
		nWorkers = size(4, 8)
		ttl      = time.Second
		before   = size(time.Second, 5*time.Second)
		after    = size(time.Second, 5*time.Second)
		kills    = size(1, 5)
		down     = size(250*time.Millisecond, 500*time.Millisecond)
		// pause and blackhole outlast the TTL: the holders lose their leases
		plan = size([]faultPlan{
			{"delay", 600 * time.Millisecond}, {"pause", 1300 * time.Millisecond}, {"cut", 300 * time.Millisecond},
			{"drop", 600 * time.Millisecond}, {"blackhole", 1300 * time.Millisecond},
		}, []faultPlan{
			{"delay", 2 * time.Second}, {"pause", 1500 * time.Millisecond}, {"cut", time.Second},
			{"drop", 2 * time.Second}, {"blackhole", 1500 * time.Millisecond},
		})
	)
	// interleave the kills
	var faults []faultPlan
	for i := range max(kills, len(plan)) {
		if i < kills {
			faults = append(faults, faultPlan{"kill", down})
		}
		if i < len(plan) {
			faults = append(faults, plan[i])
		}
	}
	gap := faultGap(faults, size(4*time.Second, 20*time.Second), 100*time.Millisecond)

	w := newWorld(t, worldConfig{serverArgs: args, proxy: true, client: clientOptions(300 * time.Millisecond), noRetries: true})
	// at full size the workers spread over more resources: the history
	// checker's cost grows exponentially with the requests of unknown
	// outcome pending at once on one resource (a 30 s run of 8 workers on
	// 4 resources did not check in 40 minutes)
	rs := resources("faults", size(4, 16))
	trs := sharedTrackers(fenced.NewMemory(), rs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	var holds []*holdRecord
	var wg sync.WaitGroup
	start := time.Now()
	for i := range nWorkers {
		wk := w.worker(i)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for ctx.Err() == nil {
				r := rs[rng.IntN(len(rs))]
				// up to two TTLs: long holds live on renewals
				work := time.Duration(20+rng.Int64N(int64(2*ttl/time.Millisecond))) * time.Millisecond
				shared := sharedWorker(i)
				h := holdIn(ctx, wk, trs[r], r, work, 0, shared, modeOpts(shared, coordinator.TTL(ttl), coordinator.Wait(2*time.Second))...)
				mu.Lock()
				holds = append(holds, h)
				mu.Unlock()
				if h.token == 0 { // not acquired (Redis unreachable): back off
					// as a worker would; each failed attempt may be a request
					// of unknown outcome, which the history checker must
					// consider applied at any time within maxDelay, at a cost
					// exponential in how many are pending at once
					time.Sleep(time.Duration(250+rng.IntN(250)) * time.Millisecond)
				}
			}
		})
	}

	// the faults, on a schedule: each sleep is how long a fault, a gap
	// between faults or the calm around them lasts while the workers run
	time.Sleep(before)
	faultsStart := time.Now()
	injected := w.injectAll(t, faults, gap, persistent, faultHooks{})
	faultsEnd := time.Now()
	time.Sleep(after)
	cancel()
	wg.Wait()
	end := time.Now()

	// figures
	var fsum fenced.Stats
	for _, r := range rs {
		fsum = fsum.Add(trs[r].Stats())
	}
	hs := summarize(holds, w.rec, w.stalls, ttl/10, func(h *holdRecord) time.Time {
		if f, ok := lastFault(injected, h.toldAt); ok {
			return f.start
		}
		return time.Time{}
	})
	lostByFault := map[string]int{}
	atRelease := 0
	for _, h := range holds {
		if !h.lost() {
			continue
		}
		if h.toldAt.IsZero() {
			atRelease++
			continue
		}
		f, _ := lastFault(injected, h.toldAt)
		lostByFault[f.kind]++
	}
	ops := w.rec.Ops()
	rate := func(from, to time.Time) float64 {
		n := 0
		for _, op := range ops {
			if op.Output.Status != history.Unknown && !op.Return.Before(from) && op.Return.Before(to) {
				n++
			}
		}
		return float64(n) / to.Sub(from).Seconds()
	}
	// a request waits at most the longest fault (a blackhole holds it, a
	// pause queues it) plus the client's timeout
	var longest time.Duration
	for _, f := range faults {
		longest = max(longest, f.d)
	}
	overtakenN, untold := overtaken(fsum, holds, w.rec, w.stalls, ttl/10)
	capExplained, capFaults := capOvertaken(fsum, holds, w.rec, w.stalls, ttl/10)
	rep := w.check(size(time.Minute, 10*time.Minute), longest+2*time.Second)
	nops, unknown := rep.Ops()

	report(t, "redis faults (%s): %d workers, %d resources, TTL %v, %v run; faults: %s",
		map[bool]string{true: "appendonly", false: "no persistence"}[persistent], nWorkers, len(rs), ttl,
		end.Sub(start).Round(time.Second), describeFaults(injected))
	report(t, "  operations %d (%d unknown); ops/s before %.0f, during %.0f, after %.0f; history linearizable: %v",
		nops, unknown, rate(start, faultsStart), rate(faultsStart, faultsEnd), rate(faultsEnd, end), rep.OK())
	report(t, "  holds %d: lost %d (told during the hold %d: %v; found at release %d); failed otherwise %d (wait ran out %d, acquire failed %d, release failed %d)",
		hs.holds, hs.lost, hs.lost-atRelease, lostByFault, atRelease, hs.otherErrs, hs.waitedOut, hs.acquireErrs, hs.releaseErrs)
	report(t, "  loss told before the lease's expiry %d, after it during a stall of the test process %d, after it otherwise %d (Redis unreachable); time to notice after the fault began p50 %v p99 %v max %v",
		hs.toldEarly, hs.toldLateStalled, hs.toldLate, percentile(hs.notice, 50).Round(time.Millisecond),
		percentile(hs.notice, 99).Round(time.Millisecond), percentile(hs.notice, 100).Round(time.Millisecond))
	report(t, "  resource: %d writes, %d accepted, %d rejected (%d re-entered a lease already written with); overlapping holds %d (live %d); stale writes accepted %d; superseded live holders %d (during a stall of the test process or a late write %d, otherwise %d: lost with Redis's data when not persistent)",
		fsum.Writes, fsum.Accepted, fsum.Rejected, fsum.RejectedReentrant, fsum.Overlaps, fsum.LiveOverlaps, fsum.StaleAccepted, fsum.RejectedUntold, overtakenN, len(untold))
	report(t, "  proxy: %+v", w.proxy.Stats())
	reportModes(t, fsum, countModes(holds), capExplained, capFaults)
	reportStalls(t, w.stalls)

	if fsum.StaleAccepted != 0 || fsum.WronglyRejected != 0 {
		t.Errorf("fencing violated: %+v\n%v", fsum, fsum.Details)
	}
	if persistent && (len(untold) != 0 || len(capFaults) != 0) {
		t.Errorf("two live holders that exclude each other, or more shared holders than the cap, with a persistent Redis: %+v\n%v\n%v",
			fsum, untold, capFaults)
	}
	if hs.toldLate != 0 {
		t.Errorf("%d losses signalled after the lease's expiry: %v", hs.toldLate, hs.lateDetail)
	}
	// the workers did something: a fenced write (exclusive holders, one
	// worker in four at the short size) or a fenced read (shared holders);
	// the short form's one exclusive worker can end with no write when
	// the faults refuse its few acquisitions
	if fsum.Accepted+fsum.ReadsAccepted == 0 {
		t.Errorf("no fenced write or read accepted: the workers did nothing")
	}
}

func describeFaults(fs []fault) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%s %v", f.kind, f.end.Sub(f.start).Round(10*time.Millisecond)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// faultGap spreads faults over during: the calm after each fault, at
// least least.
func faultGap(faults []faultPlan, during, least time.Duration) time.Duration {
	var busy time.Duration
	for _, f := range faults {
		busy += f.d
	}
	return max((during-busy)/time.Duration(len(faults)), least)
}

// inject injects f, waits as long as it lasts and heals it. The kinds:
// kill (kill -9, restarted after f.d; persistent says whether Redis keeps
// its data), pause (CLIENT PAUSE ALL), freeze (SIGSTOP, then SIGCONT),
// and the proxy's delay (75 ± 50 ms), drop (5%), cut and blackhole.
func (w *world) inject(f faultPlan, persistent bool) error {
	var err error
	switch f.kind {
	case "kill":
		err = w.kill(f.d, persistent)
	case "pause":
		err = w.srv.Pause(context.Background(), f.d)
		time.Sleep(f.d)
	case "freeze":
		if err = w.srv.Freeze(); err == nil {
			time.Sleep(f.d)
			err = w.srv.Thaw()
		}
	case "delay":
		w.proxy.Delay(75*time.Millisecond, 50*time.Millisecond)
		time.Sleep(f.d)
	case "drop":
		w.proxy.Drop(0.05)
		time.Sleep(f.d)
	case "cut":
		w.proxy.Cut()
		time.Sleep(f.d)
	case "blackhole":
		w.proxy.Blackhole()
		time.Sleep(f.d)
	default:
		err = fmt.Errorf("no fault %q", f.kind)
	}
	if w.proxy != nil {
		w.proxy.Heal()
	}
	return err
}

// faultHooks let a scenario take part in its faults: before, if not nil,
// runs ahead of each fault (its time is not the fault's); own, if not
// nil, injects the scenario's own kinds and reports whether it knew f's.
type faultHooks struct {
	before func(f faultPlan)
	own    func(f faultPlan) bool
}

// injectAll injects faults one after the other, each followed by gap of
// calm, and returns them as injected.
func (w *world) injectAll(t *testing.T, faults []faultPlan, gap time.Duration, persistent bool, hooks faultHooks) []fault {
	t.Helper()
	var injected []fault
	for _, f := range faults {
		if hooks.before != nil {
			hooks.before(f)
		}
		start := time.Now()
		if hooks.own == nil || !hooks.own(f) {
			if err := w.inject(f, persistent); err != nil {
				t.Fatalf("%s: %v", f.kind, err)
			}
		}
		injected = append(injected, fault{f.kind, start, time.Now()})
		time.Sleep(gap) // the calm between faults: part of the scenario
	}
	return injected
}

// lastFault returns the last of injected that began by at.
func lastFault(injected []fault, at time.Time) (fault, bool) {
	var found fault
	ok := false
	for _, f := range injected {
		if !f.start.After(at) {
			found, ok = f, true
		}
	}
	return found, ok
}
