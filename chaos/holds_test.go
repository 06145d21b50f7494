package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
)

// holdRecord is what a worker saw of one Hold.
type holdRecord struct {
	id       int64 // the hold's id at the fenced resource
	worker   *worker
	r        coordinator.Resource
	token    uint64
	shared   bool // a shared hold: it reads, fenced, instead of writing
	stalled  bool
	start    time.Time  // Hold called
	entered  time.Time  // fn started
	checked  time.Time  // fn looked at its context before writing
	toldAt   time.Time  // fn's context cancelled by a loss (zero: not told)
	cause    error      // the cancellation's cause
	mu       sync.Mutex // guards toldAt and cause while the hold runs
	accepted bool       // the fenced write was accepted
	wrote    bool       // a fenced write was sent
	end      time.Time
	err      error // Hold's error
}

// lost reports whether Hold said the lease was lost.
func (h *holdRecord) lost() bool { return errors.Is(h.err, coordinator.ErrLeaseLost) }

// resources returns n resources of the scenario.
func resources(kind string, n int) []coordinator.Resource {
	rs := make([]coordinator.Resource, n)
	for i := range rs {
		rs[i] = coordinator.Resource{Type: "chaos", ID: fmt.Sprintf("%s-%d", kind, i)}
	}
	return rs
}

var holdSeq atomic.Int64

// hold runs one exclusive Hold of wk on r whose function enters the
// resource, waits work (stalling the whole worker process for stall
// first, if not zero), and sends its fenced write — without looking at
// its context when it stalled, as a paused process would not, and only if
// its context is live otherwise.
func hold(ctx context.Context, wk *worker, tr *fenced.Tracker, r coordinator.Resource, work, stall time.Duration, opts ...coordinator.AcquireOption) *holdRecord {
	return holdIn(ctx, wk, tr, r, work, stall, false, opts...)
}

// holdIn is hold in a mode: a shared hold (opts take it shared) enters
// the resource as a reader and ends with a fenced read, not a write.
func holdIn(ctx context.Context, wk *worker, tr *fenced.Tracker, r coordinator.Resource, work, stall time.Duration, shared bool, opts ...coordinator.AcquireOption) *holdRecord {
	h := &holdRecord{worker: wk, r: r, shared: shared, stalled: stall > 0, start: time.Now()}
	id := holdSeq.Add(1)
	h.id = id
	h.err = wk.c.Hold(ctx, r, wk.owner, func(hctx context.Context, l coordinator.Lease) error {
		h.token, h.entered = l.Token, time.Now()
		defer noticeLoss(hctx, h)()
		defer tr.Exit(id)
		enter := tr.Enter
		if shared {
			enter = tr.EnterShared
		}
		v, err := enter(hctx, id, wk.owner, l.Token)
		if err != nil {
			return err
		}
		if stall > 0 {
			wk.proc.Pause(stall)
			time.Sleep(stall) // the holder stalls, as in a GC pause: part of the scenario
		}
		if work > 0 {
			select {
			case <-time.After(work):
			case <-hctx.Done():
			}
		}
		h.checked = time.Now()
		told := hctx.Err() != nil
		if told && stall == 0 {
			return nil // a live worker stops writing when told
		}
		h.wrote = true
		var ok bool
		if shared {
			ok, err = tr.ReadFenced(hctx, id, wk.owner, l.Token, told, stall > 0)
		} else {
			ok, err = tr.Write(hctx, id, wk.owner, l.Token, v+1, told, stall > 0)
		}
		h.accepted = ok
		return err
	}, opts...)
	h.mu.Lock()
	h.end = time.Now()
	h.mu.Unlock()
	return h
}

// noticeLoss records in h when and why ctx, the context of h's work, is
// cancelled by a loss, until the function it returns is called.
func noticeLoss(ctx context.Context, h *holdRecord) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if errors.Is(context.Cause(ctx), coordinator.ErrLeaseLost) {
			h.toldAt, h.cause = time.Now(), context.Cause(ctx)
		}
	})
}

// holdStats sums up holds.
type holdStats struct {
	holds, stalled, lost, lostStalled, lostLive, otherErrs int
	// otherErrs by kind: the wait for the lease ran out, the acquisition
	// failed, the final release failed
	waitedOut, acquireErrs, releaseErrs int
	// told before the lease's expiry (the latest expiry Redis reported);
	// after it while the process was stalled at least as long (a process
	// pause: the known limit, see stallMonitor); after it otherwise (a
	// fault of the keep-alive)
	toldEarly, toldLateStalled, toldLate int
	notice                               []time.Duration // loss signalled, after the fault began
	lateDetail                           []string
	errDetail                            []string
}

// summarize sums holds up. margin is the keep-alive's safety margin: a
// loss is signalled at the latest margin before the lease's expiry when
// the process runs.
func summarize(holds []*holdRecord, rec *history.Recorder, stalls *stallMonitor, margin time.Duration,
	faultStart func(h *holdRecord) time.Time) holdStats {
	var s holdStats
	for _, h := range holds {
		s.holds++
		if h.stalled {
			s.stalled++
		}
		switch {
		case h.lost():
			s.lost++
			if h.stalled {
				s.lostStalled++
			} else {
				s.lostLive++
			}
		case h.err != nil:
			s.otherErrs++
			switch {
			case errors.Is(h.err, coordinator.ErrConflict):
				s.waitedOut++
			case h.token == 0:
				s.acquireErrs++
			default:
				s.releaseErrs++
			}
			if len(s.errDetail) < 10 {
				s.errDetail = append(s.errDetail, h.err.Error())
			}
		}
		if h.toldAt.IsZero() {
			continue
		}
		if f := faultStart(h); !f.IsZero() && h.toldAt.After(f) {
			s.notice = append(s.notice, h.toldAt.Sub(f))
		}
		if !errors.Is(h.cause, coordinator.ErrRenewTimeout) {
			continue // Redis said the lease was gone: it was lost with Redis's data
		}
		exp, ok := rec.Expiry(h.r, h.worker.owner, h.token)
		if !ok {
			continue
		}
		// The keep-alive gives up at the latest margin before the expiry;
		// from then until the holder is told, a few goroutines must run,
		// which takes far less than the margin. A notice late by late
		// means they were held up for margin + late: if the process itself
		// was stalled for most of that window, that is a process pause,
		// which only fencing covers; otherwise the keep-alive is at fault.
		late := h.toldAt.Sub(exp)
		window := exp.Add(-margin)
		switch {
		case late < 0:
			s.toldEarly++
		case stalls.lost(window, h.toldAt) >= (late+margin)/2:
			s.toldLateStalled++
		default:
			s.toldLate++
			s.lateDetail = append(s.lateDetail, fmt.Sprintf("%s token %d told %v after its expiry (the test process stalled %v of the %v since the margin began): %v",
				h.r, h.token, late, stalls.lost(window, h.toldAt), late+margin, h.cause))
		}
	}
	return s
}

// overtaken sorts the live overlaps and the rejected writes of untold
// holders that the fenced resource saw. Each means a holder that still
// believed it held the lease when another had taken it. Either the
// holder looked at its context before its lease expired and its write
// came later (a pause between the check and the write, or a slow write:
// what fencing is for), or its loss was signalled late while the test
// process itself was stalled (see summarize); both are counted in
// fenced. Any other is a fault of the keep-alive.
func overtaken(fs fenced.Stats, holds []*holdRecord, rec *history.Recorder, stalls *stallMonitor, margin time.Duration) (fencedN int, faults []string) {
	byID := map[int64]*holdRecord{}
	for _, h := range holds {
		byID[h.id] = h
	}
	// late reports whether a holder not told by at, after its expiry exp,
	// is explained by a stall of the process
	stalled := func(exp, at time.Time) bool {
		return stalls.lost(exp.Add(-margin), at) >= (at.Sub(exp)+margin)/2
	}
	for _, ev := range fs.LiveOverlapEvents {
		h := byID[ev.Inside]
		if h == nil {
			faults = append(faults, fmt.Sprintf("live overlap with an unknown hold %d", ev.Inside))
			continue
		}
		exp, ok := rec.Expiry(h.r, h.worker.owner, h.token)
		switch {
		case !ok:
			faults = append(faults, fmt.Sprintf("live overlap: no expiry recorded for %s token %d", h.r, h.token))
		case ev.At.Before(exp):
			faults = append(faults, fmt.Sprintf("hold %d (token %d) entered %s %v before the lease of hold %d (token %d) expired",
				ev.Hold, ev.Token, h.r, exp.Sub(ev.At), ev.Inside, ev.InsideToken))
		case stalled(exp, ev.At):
			fencedN++
		default:
			faults = append(faults, fmt.Sprintf("hold %d (token %d) entered %s %v after the expiry of hold %d (token %d), not told yet (the test process stalled %v of that)",
				ev.Hold, ev.Token, h.r, ev.At.Sub(exp), ev.Inside, ev.InsideToken, stalls.lost(exp.Add(-margin), ev.At)))
		}
	}
	for _, w := range fs.UntoldRejections {
		h := byID[w.Hold]
		if h == nil {
			faults = append(faults, fmt.Sprintf("rejected write of an unknown hold %d", w.Hold))
			continue
		}
		exp, ok := rec.Expiry(h.r, h.worker.owner, h.token)
		switch {
		case !ok:
			faults = append(faults, fmt.Sprintf("rejected write: no expiry recorded for %s token %d", h.r, h.token))
		case h.checked.Before(exp), stalled(exp, h.checked):
			fencedN++
		default:
			faults = append(faults, fmt.Sprintf("write of hold %d (%s token %d) rejected: its holder not told %v after its expiry (the test process stalled %v of that)",
				w.Hold, h.r, h.token, h.checked.Sub(exp), stalls.lost(exp.Add(-margin), h.checked)))
		}
	}
	return fencedN, faults
}

// TestPausedHolders is scenario 1: workers whose process pauses for two
// TTLs inside a hold, then writes without knowing better. The lease
// expires meanwhile and another worker takes the resource: the resource
// sees overlapping holds (the hazard; the test's control), and fencing
// must reject every stale write. Modes are mixed (see sharedWorker): a
// paused reader's fenced read after a newer writer's write, and a paused
// writer's write after a newer reader's read, must be rejected too.
func TestPausedHolders(t *testing.T) {
	parallel(t)
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			parallel(t)
			if full() && backend == "memory" {
				t.Skip("the full size runs on the Postgres row; the short size runs both")
			}
			var store fenced.Store = fenced.NewMemory()
			if backend == "postgres" {
				pg, err := fenced.NewPostgres(context.Background(), pgPool(t))
				if err != nil {
					t.Fatal(err)
				}
				store = pg
			}
			pausedHolders(t, store)
		})
	}
}

func pausedHolders(t *testing.T, store fenced.Store) {
	var (
		nWorkers = size(4, 8)
		nHolds   = size(20, 2000)
		ttl      = 500 * time.Millisecond
		stall    = 2 * ttl
	)
	w := newWorld(t, worldConfig{client: clientOptions(2 * time.Second)})
	rs := resources("paused", 4)
	trs := sharedTrackers(store, rs)
	ctx, cancel := context.WithTimeout(context.Background(), size(2*time.Minute, 30*time.Minute))
	defer cancel()

	var mu sync.Mutex
	var holds []*holdRecord
	var wg sync.WaitGroup
	start := time.Now()
	for i := range nWorkers {
		wk := w.worker(i)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for n := range nHolds {
				if ctx.Err() != nil {
					return
				}
				r := rs[rng.IntN(len(rs))]
				var s time.Duration
				if n%10 == i%10 { // 10% of the holds
					s = stall
				}
				shared := sharedWorker(i)
				h := holdIn(ctx, wk, trs[r], r, 0, s, shared, modeOpts(shared, coordinator.TTL(ttl), coordinator.Wait(time.Minute))...)
				mu.Lock()
				holds = append(holds, h)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var fs fenced.Stats
	for _, r := range rs {
		fs = fs.Add(trs[r].Stats())
	}
	hs := summarize(holds, w.rec, w.stalls, ttl/10, func(h *holdRecord) time.Time {
		if h.stalled {
			return h.entered // the pause began as fn started
		}
		return time.Time{}
	})
	overtakenN, untold := overtaken(fs, holds, w.rec, w.stalls, ttl/10)
	capExplained, capFaults := capOvertaken(fs, holds, w.rec, w.stalls, ttl/10)
	rep := w.check(size(time.Minute, 10*time.Minute), stall+5*time.Second)
	ops, unknown := rep.Ops()
	report(t, "paused holders: %d workers × %d holds on %d resources, TTL %v, %d stalled for %v; %v",
		nWorkers, nHolds, len(rs), ttl, hs.stalled, stall, elapsed.Round(time.Millisecond))
	report(t, "  resource: %d writes, %d accepted, %d rejected; overlapping holds %d (live %d); stale writes accepted %d; wrongly rejected %d; rejected from untold holders %d; accepted from told holders %d; live holders overtaken during a stall of the test process or a late write %d, otherwise %d",
		fs.Writes, fs.Accepted, fs.Rejected, fs.Overlaps, fs.LiveOverlaps, fs.StaleAccepted, fs.WronglyRejected, fs.RejectedUntold, fs.AcceptedTold, overtakenN, len(untold))
	report(t, "  holds: %d lost (%d of %d stalled, %d live), %d other errors; loss told before expiry %d, after it during a stall of the test process %d, after it otherwise %d; time to notice after the pause began p50 %v p99 %v",
		hs.lost, hs.lostStalled, hs.stalled, hs.lostLive, hs.otherErrs, hs.toldEarly, hs.toldLateStalled, hs.toldLate,
		percentile(hs.notice, 50).Round(time.Millisecond), percentile(hs.notice, 99).Round(time.Millisecond))
	reportStalls(t, w.stalls)
	report(t, "  history: %d operations (%d unknown), linearizable: %v", ops, unknown, rep.OK())
	reportModes(t, fs, countModes(holds), capExplained, capFaults)
	if fs.MaxShared < 2 {
		t.Errorf("control failed: no two shared holds inside at once")
	}
	if len(capFaults) != 0 {
		t.Errorf("shared holds beyond the cap: %v", capFaults)
	}

	if fs.Overlaps == 0 {
		t.Errorf("control failed: no overlapping holds seen, the test could not catch a broken fence")
	}
	if fs.StaleAccepted != 0 || fs.WronglyRejected != 0 {
		t.Errorf("fencing violated: %+v\n%v", fs, fs.Details)
	}
	if len(untold) != 0 {
		t.Errorf("holders not told of their loss in time: %v", untold)
	}
	if hs.lostStalled != hs.stalled {
		t.Errorf("%d of %d stalled holds were not told their lease was lost", hs.stalled-hs.lostStalled, hs.stalled)
	}
	if hs.toldLate != 0 {
		t.Errorf("%d losses signalled after the lease's expiry: %v", hs.toldLate, hs.lateDetail)
	}
	if hs.otherErrs != 0 {
		t.Errorf("%d holds failed: %v", hs.otherErrs, hs.errDetail)
	}
}
