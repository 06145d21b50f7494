// Package fenced is the protected resource of the safety tests: a
// register that accepts a write only with a fencing token above the last
// one it accepted (UPDATE ... WHERE last_token < $token), in memory or as
// a Postgres row, and a Tracker that records every hold's entry, exit and
// write at the resource, so that overlapping holds and stale writes can be
// counted.
package fenced

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Store is a fenced register.
type Store interface {
	// Write sets the register to value if token is above the last token
	// accepted, and returns whether it did and the register's version
	// after the write (accepted writes number 1, 2, 3, ...).
	Write(ctx context.Context, name string, token uint64, holder string, value int64) (accepted bool, version int64, err error)
	// Read returns the register's value.
	Read(ctx context.Context, name string) (int64, error)
}

// Memory is a fenced register in memory.
type Memory struct {
	mu   sync.Mutex
	regs map[string]*memReg
}

type memReg struct {
	last    uint64
	value   int64
	version int64
}

// NewMemory returns an empty in-memory register set.
func NewMemory() *Memory { return &Memory{regs: map[string]*memReg{}} }

func (m *Memory) reg(name string) *memReg {
	r := m.regs[name]
	if r == nil {
		r = &memReg{}
		m.regs[name] = r
	}
	return r
}

// Write implements Store.
func (m *Memory) Write(_ context.Context, name string, token uint64, _ string, value int64) (bool, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.reg(name)
	if !(r.last < token) {
		return false, r.version, nil
	}
	r.last, r.value = token, value
	r.version++
	return true, r.version, nil
}

// Read implements Store.
func (m *Memory) Read(_ context.Context, name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reg(name).value, nil
}

// Write is one write attempt at the resource.
type Write struct {
	Seq      int64 // order in which the tracker saw the attempts end
	Hold     int64
	Holder   string
	Token    uint64
	Accepted bool
	Version  int64 // accepted: the register's version after the write
	// Told: the holder had been told that its lease was lost when it
	// sent the write (its context was cancelled).
	Told bool
	// Stalled: the hold had stalled (a process pause) before writing.
	Stalled bool
	At      time.Time
}

type session struct {
	holder string
	token  uint64
	ctx    context.Context
}

// Tracker records the holds of one resource as the resource sees them.
type Tracker struct {
	Name  string
	store Store

	mu     sync.Mutex
	seq    int64
	active map[int64]session
	writes []Write
	// overlaps counts entries while another hold was inside; live the
	// entries while another hold was inside that had not been told of a
	// loss.
	overlaps, live int
	liveDetail     []string
	liveEvents     []Overlap
}

// Overlap is a hold that entered the resource while another hold, not
// told of a loss, was inside.
type Overlap struct {
	Hold         int64
	Holder       string
	Token        uint64
	Inside       int64 // the hold inside
	InsideHolder string
	InsideToken  uint64
	At           time.Time // when Hold entered
}

// NewTracker returns a tracker of the register name of store.
func NewTracker(store Store, name string) *Tracker {
	return &Tracker{Name: name, store: store, active: map[int64]session{}}
}

// Enter records that hold (of holder, with token) starts working on the
// resource, and reads the register. ctx is the hold's context: cancelled
// when the holder is told of a loss.
func (t *Tracker) Enter(ctx context.Context, hold int64, holder string, token uint64) (int64, error) {
	t.mu.Lock()
	for id, s := range t.active {
		t.overlaps++
		if s.ctx.Err() == nil {
			t.live++
			t.liveEvents = append(t.liveEvents, Overlap{Hold: hold, Holder: holder, Token: token,
				Inside: id, InsideHolder: s.holder, InsideToken: s.token, At: time.Now()})
			t.liveDetail = append(t.liveDetail, fmt.Sprintf("hold %d (%s, token %d) entered while hold %d (%s, token %d) was inside, not told of a loss",
				hold, holder, token, id, s.holder, s.token))
		}
	}
	t.active[hold] = session{holder: holder, token: token, ctx: ctx}
	t.mu.Unlock()
	return t.store.Read(ctx, t.Name)
}

// Exit records that hold stopped working on the resource.
func (t *Tracker) Exit(hold int64) {
	t.mu.Lock()
	delete(t.active, hold)
	t.mu.Unlock()
}

// Write sends hold's fenced write and records it. told says whether the
// holder knew its lease was lost (a paused process writes anyway).
func (t *Tracker) Write(ctx context.Context, hold int64, holder string, token uint64, value int64, told, stalled bool) (bool, error) {
	ok, version, err := t.store.Write(context.WithoutCancel(ctx), t.Name, token, holder, value)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	t.seq++
	t.writes = append(t.writes, Write{Seq: t.seq, Hold: hold, Holder: holder, Token: token, Accepted: ok,
		Version: version, Told: told, Stalled: stalled, At: time.Now()})
	t.mu.Unlock()
	return ok, nil
}

// Stats is what a tracker saw.
type Stats struct {
	Writes, Accepted, Rejected int
	// Overlaps: holds that entered while another hold was inside: what
	// the resource would have suffered without fencing.
	Overlaps int
	// LiveOverlaps: overlaps where the hold inside had not been told of
	// a loss (two holders both believing they held the lease).
	LiveOverlaps int
	// StaleAccepted: accepted writes whose token was not above the token
	// of an earlier accepted write. Fencing makes this 0.
	StaleAccepted int
	// WronglyRejected: rejected writes whose token was above every token
	// accepted: the resource refused a write it should have taken.
	WronglyRejected int
	// RejectedUntold: rejected writes from holders not told of a loss,
	// with a token below one accepted: a live holder superseded.
	RejectedUntold int
	// RejectedReentrant: rejected writes whose token had been accepted
	// already: a later hold that re-entered the same lease (same owner,
	// same token) and wrote again, which last_token < token refuses.
	RejectedReentrant int
	// AcceptedTold: accepted writes from holders already told of a loss
	// (no newer holder had written yet: fencing lets them through).
	AcceptedTold int
	Details      []string
	// LiveOverlapEvents are the live overlaps, UntoldRejections the
	// writes counted in RejectedUntold, for a closer look.
	LiveOverlapEvents []Overlap
	UntoldRejections  []Write
}

// Stats checks the recorded writes.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	writes := append([]Write(nil), t.writes...)
	st := Stats{Overlaps: t.overlaps, LiveOverlaps: t.live, Details: append([]string(nil), t.liveDetail...),
		LiveOverlapEvents: append([]Overlap(nil), t.liveEvents...)}
	t.mu.Unlock()
	st.Writes = len(writes)
	var accepted []Write
	acceptedTokens := map[uint64]bool{}
	for _, w := range writes {
		if w.Accepted {
			accepted = append(accepted, w)
			acceptedTokens[w.Token] = true
			st.Accepted++
			if w.Told {
				st.AcceptedTold++
			}
		}
	}
	for _, w := range writes {
		switch {
		case w.Accepted:
		case acceptedTokens[w.Token]:
			st.Rejected++
			st.RejectedReentrant++
		default:
			st.Rejected++
			if !w.Told {
				st.RejectedUntold++
				st.UntoldRejections = append(st.UntoldRejections, w)
				st.Details = append(st.Details, fmt.Sprintf("write of hold %d (%s, token %d) rejected, its holder not told of a loss", w.Hold, w.Holder, w.Token))
			}
		}
	}
	// the order in which the register took the accepted writes
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].Version < accepted[j].Version })
	var maxTok uint64
	for i, w := range accepted {
		if i > 0 && w.Version == accepted[i-1].Version {
			st.StaleAccepted++
			st.Details = append(st.Details, fmt.Sprintf("two accepted writes with version %d", w.Version))
		}
		if w.Token <= maxTok {
			st.StaleAccepted++
			st.Details = append(st.Details, fmt.Sprintf("write of hold %d (%s, token %d) accepted after token %d", w.Hold, w.Holder, w.Token, maxTok))
		}
		maxTok = max(maxTok, w.Token)
	}
	for _, w := range writes {
		if !w.Accepted && w.Token > maxTok {
			st.WronglyRejected++
			st.Details = append(st.Details, fmt.Sprintf("write of hold %d (token %d) rejected, above every accepted token", w.Hold, w.Token))
		}
	}
	return st
}

// Add sums two stats.
func (s Stats) Add(o Stats) Stats {
	s.Writes += o.Writes
	s.Accepted += o.Accepted
	s.Rejected += o.Rejected
	s.Overlaps += o.Overlaps
	s.LiveOverlaps += o.LiveOverlaps
	s.StaleAccepted += o.StaleAccepted
	s.WronglyRejected += o.WronglyRejected
	s.RejectedUntold += o.RejectedUntold
	s.RejectedReentrant += o.RejectedReentrant
	s.AcceptedTold += o.AcceptedTold
	s.Details = append(s.Details, o.Details...)
	s.LiveOverlapEvents = append(s.LiveOverlapEvents, o.LiveOverlapEvents...)
	s.UntoldRejections = append(s.UntoldRejections, o.UntoldRejections...)
	return s
}
