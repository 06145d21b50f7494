package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/chaos/internal/fenced"
	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
)

// The fault scenarios run with mixed modes: some workers hold their
// resources shared, capped at sharedCap holders, the others exclusive.
// A shared hold enters the fenced resource as a reader and ends with a
// fenced read (see package fenced).

// sharedCap is the cap of the shared workers of the fault scenarios.
const sharedCap = 2

// sharedWorker reports whether worker i of the fault scenarios holds
// shared: three workers in four, so that the shared ones meet their cap
// and the exclusive ones meet shared holders.
func sharedWorker(i int) bool { return i%4 != 0 }

// modeOpts returns the options of a hold in a worker's mode.
func modeOpts(shared bool, opts ...coordinator.AcquireOption) []coordinator.AcquireOption {
	if shared {
		return append(opts, coordinator.Permits(sharedCap))
	}
	return opts
}

// sharedTrackers returns one fenced register tracker per resource, its
// shared holds capped at sharedCap.
func sharedTrackers(store fenced.Store, rs []coordinator.Resource) map[coordinator.Resource]*fenced.Tracker {
	m := map[coordinator.Resource]*fenced.Tracker{}
	for _, r := range rs {
		m[r] = fenced.NewSharedTracker(store, r.String(), sharedCap)
	}
	return m
}

// capOvertaken sorts the shared entries beyond the cap that the fenced
// resource saw: each is explained when enough of the untold shared holds
// inside had ended in Redis (their lease's expiry passed) with their
// notice late during a stall of the test process (see overtaken) that the
// entering hold was within the cap. Any other is a fault.
func capOvertaken(fs fenced.Stats, holds []*holdRecord, rec *history.Recorder, stalls *stallMonitor, margin time.Duration) (explained int, faults []string) {
	byID := map[int64]*holdRecord{}
	for _, h := range holds {
		byID[h.id] = h
	}
	for _, ev := range fs.CapEvents {
		ended := 0
		for _, id := range ev.Inside {
			h := byID[id]
			if h == nil {
				continue
			}
			exp, ok := rec.Expiry(h.r, h.worker.owner, h.token)
			if ok && !ev.At.Before(exp) && stalls.lost(exp.Add(-margin), ev.At) >= (ev.At.Sub(exp)+margin)/2 {
				ended++
			}
		}
		if need := len(ev.Inside) - sharedCap + 1; ended >= need {
			explained++
			continue
		}
		faults = append(faults, fmt.Sprintf("shared hold %d (token %d) entered beside %d untold shared holds %v, cap %d, %d of them ended",
			ev.Hold, ev.Token, len(ev.Inside), ev.Inside, sharedCap, ended))
	}
	return explained, faults
}

// modeFigures are a scenario's holds by mode.
type modeFigures struct {
	holds, lost [2]int // exclusive, shared
}

func countModes(holds []*holdRecord) modeFigures {
	var m modeFigures
	for _, h := range holds {
		i := b2i(h.shared)
		m.holds[i]++
		if h.lost() {
			m.lost[i]++
		}
	}
	return m
}

// reportModes prints the modes' figures of a scenario.
func reportModes(t *testing.T, fs fenced.Stats, m modeFigures, capExplained int, capFaults []string) {
	t.Helper()
	report(t, "  modes (shared workers capped at %d): holds exclusive %d (lost %d), shared %d (lost %d); writes %d (%d accepted, %d rejected), fenced reads %d (%d accepted, %d rejected); most shared holds inside at once %d; overlaps of excluding modes %d (live %d); shared entries beyond the cap %d (explained by a stall of the test process %d, otherwise %d: holds lost with Redis's data when not persistent); stale operations accepted %d",
		sharedCap, m.holds[0], m.lost[0], m.holds[1], m.lost[1], fs.Writes, fs.Accepted, fs.Rejected, fs.Reads, fs.ReadsAccepted,
		fs.ReadsRejected, fs.MaxShared, fs.Overlaps, fs.LiveOverlaps, fs.CapExcess, capExplained, len(capFaults), fs.StaleAccepted)
}
