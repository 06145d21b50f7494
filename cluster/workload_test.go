package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
)

// fencedRegister is a resource protected by fencing tokens, as a storage
// service would be: it refuses a write whose token is lower than one it
// has accepted for the same resource.
type fencedRegister struct {
	mu   sync.Mutex
	last map[coordinator.Resource]uint64
}

func (f *fencedRegister) write(r coordinator.Resource, token uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.last[r] {
		return false
	}
	f.last[r] = token
	return true
}

// acquisition is one successful Acquire of the workload.
type acquisition struct {
	r        coordinator.Resource
	owner    string
	token    uint64
	start    time.Time // Acquire sent
	acquired time.Time // its reply received
	wroteAt  time.Time
	accepted bool      // the fenced write was accepted
	released time.Time // Release sent (zero if the worker stopped first)
}

// workload runs workers that acquire one of rs, write to a fenced
// register with the token, and release, until stopped; it records every
// acquisition and counts errors.
type workload struct {
	c     *coordinator.Coordinator
	rs    []coordinator.Resource
	fence *fencedRegister

	stop  context.CancelFunc
	wg    sync.WaitGroup
	ended time.Time // set by finish

	mu        sync.Mutex
	acqs      []acquisition
	errs      map[string]int
	relErrs   int
	conflicts int
	reentries int
}

// startWorkload starts workers on c over rs, each op bounded by opTimeout.
func startWorkload(c *coordinator.Coordinator, rs []coordinator.Resource, workers int, opTimeout time.Duration) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{c: c, rs: rs, fence: &fencedRegister{last: map[coordinator.Resource]uint64{}},
		stop: cancel, errs: map[string]int{}}
	for i := range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.worker(ctx, i, opTimeout)
		}()
	}
	return w
}

func (w *workload) worker(ctx context.Context, i int, opTimeout time.Duration) {
	owner := fmt.Sprintf("worker-%d", i)
	for j := 0; ctx.Err() == nil; j++ {
		r := w.rs[(i*7+j)%len(w.rs)]
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		a := acquisition{r: r, owner: owner, start: time.Now()}
		l, err := w.c.Acquire(octx, r, owner, coordinator.TTL(3*time.Second))
		a.acquired = time.Now()
		cancel()
		if err != nil {
			w.mu.Lock()
			if errors.Is(err, coordinator.ErrConflict) {
				w.conflicts++
			} else if ctx.Err() == nil {
				w.errs[errorClass(err)]++
			}
			w.mu.Unlock()
			if !errors.Is(err, coordinator.ErrConflict) {
				sleepCtx(ctx, 5*time.Millisecond)
			}
			continue
		}
		if l.Count > 1 {
			// a re-entry of a lease whose release failed: not a fresh
			// acquisition; drop the hold it added
			octx, cancel = context.WithTimeout(context.Background(), opTimeout)
			_, _ = w.c.Release(octx, r, owner)
			cancel()
			w.mu.Lock()
			w.reentries++
			w.mu.Unlock()
			continue
		}
		a.token = l.Token
		a.wroteAt = time.Now()
		a.accepted = w.fence.write(r, l.Token)
		a.released = time.Now()
		octx, cancel = context.WithTimeout(context.Background(), opTimeout)
		_, err = w.c.Release(octx, r, owner)
		cancel()
		w.mu.Lock()
		w.acqs = append(w.acqs, a)
		if err != nil {
			w.relErrs++ // the lease expires by its TTL
		}
		w.mu.Unlock()
	}
}

// finish stops the workers and waits for them.
func (w *workload) finish() {
	w.ended = time.Now()
	w.stop()
	w.wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errorClass names an error for the counts: the Redis error prefix, or
// the kind of network failure.
func errorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.As(err, &ne):
		return "network"
	}
	msg := err.Error()
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS"} {
		if strings.Contains(msg, ": "+p+" ") || strings.HasPrefix(msg, p+" ") {
			return p
		}
	}
	return msg
}

// report is what a workload saw around a fault injected at t0.
type report struct {
	acquisitions int           // successful, in all
	after        int           // successful on the affected resources, sent after recovered
	window       time.Duration // longest gap between successes on the affected resources
	windowStart  time.Time
	otherWindow  time.Duration // the same on the other resources (0 when none)
	overlaps     int           // acquisitions that overlapped a later one of the same resource
	rejected     int           // fenced writes refused

	mirrorLag time.Duration  // from the workload's end until the mirror had applied every entry
	mirror    pgaudit.Report // diagnostics then
	rows      []string       // the mirror's rows and their resources' ledger, when they differ from Redis
}

func (r report) String() string {
	return fmt.Sprintf("%d acquisitions, unavailability window %v (longest gap between successes on the affected resources; %v on the others), "+
		"%d acquisitions after recovery, %d overlapping holds, %d fenced writes refused",
		r.acquisitions, r.window.Round(time.Millisecond), r.otherWindow.Round(time.Millisecond), r.after, r.overlaps, r.rejected)
}

// analyse checks the workload's history and measures it: affected says
// which resources the fault hit, t0 is when it was injected and recovered
// when the new master was in place. It fails t when a fencing token did
// not exceed every token issued before its acquisition was sent, or when
// a fenced write was refused although its lease overlapped no later one.
func (w *workload) analyse(t *testing.T, affected func(coordinator.Resource) bool, t0, recovered time.Time) report {
	t.Helper()
	end := w.ended
	w.mu.Lock()
	defer w.mu.Unlock()
	rep := report{acquisitions: len(w.acqs)}

	// gaps between successes, from a little before the fault
	var hit, other []time.Time
	for _, a := range w.acqs {
		if affected(a.r) {
			hit = append(hit, a.acquired)
			if a.start.After(recovered) {
				rep.after++
			}
		} else {
			other = append(other, a.acquired)
		}
	}
	gap := func(ts []time.Time) (time.Duration, time.Time) {
		if len(ts) == 0 {
			return 0, time.Time{} // no such resources
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		var longest time.Duration
		var at time.Time
		prev := t0.Add(-200 * time.Millisecond)
		for _, ts := range ts {
			if ts.Before(prev) {
				continue
			}
			if d := ts.Sub(prev); d > longest {
				longest, at = d, prev
			}
			prev = ts
		}
		if d := end.Sub(prev); d > longest {
			longest, at = d, prev // no success from prev to the end
		}
		return longest, at
	}
	rep.window, rep.windowStart = gap(hit)
	rep.otherWindow, _ = gap(other)

	// per resource: tokens increase, and a refused write is explained by
	// a later lease that overlapped
	byRes := map[coordinator.Resource][]acquisition{}
	for _, a := range w.acqs {
		byRes[a.r] = append(byRes[a.r], a)
	}
	for r, as := range byRes {
		byStart := slices.Clone(as)
		sort.Slice(byStart, func(i, j int) bool { return byStart[i].start.Before(byStart[j].start) })
		byEnd := slices.Clone(as)
		sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].acquired.Before(byEnd[j].acquired) })
		var maxTok uint64
		var maxOf acquisition
		k := 0
		for _, b := range byStart {
			for ; k < len(byEnd) && byEnd[k].acquired.Before(b.start); k++ {
				if byEnd[k].token > maxTok {
					maxTok, maxOf = byEnd[k].token, byEnd[k]
				}
			}
			if b.token <= maxTok {
				t.Errorf("%s: token %d (sent %v) not above token %d issued before (received %v): fencing tokens went back",
					r, b.token, b.start.Format("15:04:05.000000"), maxTok, maxOf.acquired.Format("15:04:05.000000"))
			}
		}
		for _, a := range as {
			overlapped := false
			for _, b := range as {
				// b was granted after a (tokens follow the order of
				// grants) and before a's release was sent
				if b.token > a.token && b.acquired.Before(a.released) {
					overlapped = true
				}
			}
			if overlapped {
				rep.overlaps++
			}
			if !a.accepted {
				rep.rejected++
				if !overlapped {
					t.Errorf("%s: write with token %d refused, but no later lease overlapped it", r, a.token)
				}
			}
		}
	}
	return rep
}

// errorSummary lists the error counts.
func (w *workload) errorSummary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for k, n := range w.errs {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("conflicts %d, release errors %d, acquire errors {%s}", w.conflicts, w.relErrs, strings.Join(parts, ", "))
}
