package chaos

import (
	"sync"
	"testing"
	"time"
)

// stallMonitor measures the stalls of the test process itself, as
// jHiccup does for a JVM: a goroutine sleeps a millisecond at a time and
// records how much later than asked it woke. On a loaded machine (two
// CPUs shared, the race detector) the process, and so every goroutine
// that must run to tell a holder of its loss, can be held up for longer
// than the lease's safety margin: that is a process pause, the limit the
// fencing token exists for, and not a fault of the keep-alive. The
// scenarios use the monitor to tell the two apart: a loss signalled after
// the lease's expiry fails the test unless the process lost at least as
// much time to stalls in the meantime.
type stallMonitor struct {
	mu     sync.Mutex
	stalls []stall
	stop   chan struct{}
	done   chan struct{}
}

// stall is one wake-up that came late by more than stallNoise.
type stall struct {
	end  time.Time     // when the goroutine woke
	late time.Duration // how much later than asked
}

const (
	stallTick  = time.Millisecond
	stallNoise = 2 * time.Millisecond
)

// newStallMonitor starts a monitor that runs until t ends.
func newStallMonitor(t testing.TB) *stallMonitor {
	m := &stallMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	t.Cleanup(func() {
		close(m.stop)
		<-m.done
	})
	return m
}

func (m *stallMonitor) run() {
	defer close(m.done)
	timer := time.NewTimer(stallTick)
	defer timer.Stop()
	for {
		asked := time.Now().Add(stallTick)
		timer.Reset(stallTick)
		select {
		case <-m.stop:
			return
		case <-timer.C:
		}
		now := time.Now()
		if late := now.Sub(asked); late > stallNoise {
			m.mu.Lock()
			m.stalls = append(m.stalls, stall{end: now, late: late})
			m.mu.Unlock()
		}
	}
}

// lost returns the time the process lost to stalls between from and to
// (the parts of the stalls inside the interval).
func (m *stallMonitor) lost(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum time.Duration
	for _, s := range m.stalls {
		start := s.end.Add(-s.late)
		if !s.end.After(from) || !start.Before(to) {
			continue
		}
		if start.Before(from) {
			start = from
		}
		end := s.end
		if end.After(to) {
			end = to
		}
		sum += end.Sub(start)
	}
	return sum
}

// summary returns how many stalls the monitor saw, the longest, and the
// time they took in all.
func (m *stallMonitor) summary() (n int, longest, total time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stalls {
		longest = max(longest, s.late)
		total += s.late
	}
	return len(m.stalls), longest, total
}

// reportStalls reports what the monitor saw.
func reportStalls(t *testing.T, m *stallMonitor) {
	t.Helper()
	n, longest, total := m.summary()
	report(t, "  stalls of the test process over %v: %d, longest %v, %v in all", stallNoise, n,
		longest.Round(time.Millisecond), total.Round(time.Millisecond))
}

// TestStallMonitorLost checks the sum of the stalls inside an interval.
func TestStallMonitorLost(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	m := &stallMonitor{stalls: []stall{
		{end: at(100), late: 50 * time.Millisecond},  // 50-100
		{end: at(200), late: 20 * time.Millisecond},  // 180-200
		{end: at(400), late: 100 * time.Millisecond}, // 300-400
	}}
	for _, c := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 1000, 170 * time.Millisecond},
		{75, 190, 35 * time.Millisecond},
		{100, 180, 0},
		{350, 360, 10 * time.Millisecond},
		{500, 600, 0},
	} {
		if got := m.lost(at(c.from), at(c.to)); got != c.want {
			t.Errorf("lost(%d, %d) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	n, longest, total := m.summary()
	if n != 3 || longest != 100*time.Millisecond || total != 170*time.Millisecond {
		t.Errorf("summary = %d, %v, %v", n, longest, total)
	}
}
