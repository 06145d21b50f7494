// Package fenced is the protected resource of the safety tests: a
// register that accepts a write only with a fencing token above the last
// one it accepted and above every token a reader read with (UPDATE ...
// WHERE last_token < $token AND read_token < $token), in memory or as a
// Postgres row, and a Tracker that records every hold's entry, exit,
// write and fenced read at the resource, so that overlapping holds, holds
// beyond a cap, stale writes and stale reads can be counted.
//
// Shared holders only read. A fenced read with token t is accepted only
// if no write with a token of t or more was accepted (the reader's lease
// is not older than the last writer's), and it raises the register's
// read fence to t: a writer whose lease ended before the reader's began
// (a lower token) can no longer write what the reader believes cannot
// change. Readers do not fence one another.
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
	// accepted for a write and above the read fence, and returns whether
	// it did and the register's version after the write (accepted writes
	// and fenced reads number 1, 2, 3, ...).
	Write(ctx context.Context, name string, token uint64, holder string, value int64) (accepted bool, version int64, err error)
	// ReadFenced reads the register for a shared holder with token if
	// token is above the last token accepted for a write, raising the
	// read fence to token, and returns whether it did, the value and the
	// register's version after the read.
	ReadFenced(ctx context.Context, name string, token uint64, holder string) (accepted bool, value, version int64, err error)
	// Read returns the register's value.
	Read(ctx context.Context, name string) (int64, error)
}

// Memory is a fenced register in memory.
type Memory struct {
	mu   sync.Mutex
	regs map[string]*memReg
}

type memReg struct {
	last    uint64 // of the last accepted write
	read    uint64 // the read fence: the highest token of an accepted read
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
	if !(r.last < token && r.read < token) {
		return false, r.version, nil
	}
	r.last, r.value = token, value
	r.version++
	return true, r.version, nil
}

// ReadFenced implements Store.
func (m *Memory) ReadFenced(_ context.Context, name string, token uint64, _ string) (bool, int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.reg(name)
	if !(r.last < token) {
		return false, r.value, r.version, nil
	}
	r.read = max(r.read, token)
	r.version++
	return true, r.value, r.version, nil
}

// Read implements Store.
func (m *Memory) Read(_ context.Context, name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reg(name).value, nil
}

// Write is one write attempt at the resource, or one fenced read (Read).
type Write struct {
	Seq      int64 // order in which the tracker saw the attempts end
	Hold     int64
	Holder   string
	Token    uint64
	Read     bool // a shared holder's fenced read, not a write
	Accepted bool
	Version  int64 // accepted: the register's version after the operation
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
	shared bool
	ctx    context.Context
}

// Tracker records the holds of one resource as the resource sees them.
type Tracker struct {
	Name  string
	store Store
	cap   int // the most shared holds at once; 0 none

	mu     sync.Mutex
	seq    int64
	active map[int64]session
	writes []Write
	// overlaps counts entries while another hold was inside that the
	// modes exclude (one of the two exclusive); live the entries while
	// such a hold was inside that had not been told of a loss.
	overlaps, live int
	liveDetail     []string
	liveEvents     []Overlap
	// shared holds: the most inside at once, and the entries beyond the
	// cap while at least cap untold shared holds were inside
	maxShared int
	capEvents []CapExcess
}

// Overlap is a hold that entered the resource while another hold, not
// told of a loss, was inside, and the modes of the two exclude each
// other.
type Overlap struct {
	Hold         int64
	Holder       string
	Token        uint64
	Inside       int64 // the hold inside
	InsideHolder string
	InsideToken  uint64
	At           time.Time // when Hold entered
}

// CapExcess is a shared hold that entered while at least the cap of
// shared holds, none told of a loss, were inside.
type CapExcess struct {
	Hold   int64
	Token  uint64
	Inside []int64 // the untold shared holds inside
	At     time.Time
}

// NewTracker returns a tracker of the register name of store.
func NewTracker(store Store, name string) *Tracker {
	return &Tracker{Name: name, store: store, active: map[int64]session{}}
}

// NewSharedTracker returns a tracker of the register name of store whose
// shared holds are capped at limit at once (0: no cap).
func NewSharedTracker(store Store, name string, limit int) *Tracker {
	t := NewTracker(store, name)
	t.cap = limit
	return t
}

// Enter records that an exclusive hold (of holder, with token) starts
// working on the resource, and reads the register. ctx is the hold's
// context: cancelled when the holder is told of a loss.
func (t *Tracker) Enter(ctx context.Context, hold int64, holder string, token uint64) (int64, error) {
	t.enter(ctx, hold, session{holder: holder, token: token, ctx: ctx})
	return t.store.Read(ctx, t.Name)
}

// EnterShared records that a shared hold starts working on the resource,
// and reads the register.
func (t *Tracker) EnterShared(ctx context.Context, hold int64, holder string, token uint64) (int64, error) {
	t.enter(ctx, hold, session{holder: holder, token: token, shared: true, ctx: ctx})
	return t.store.Read(ctx, t.Name)
}

func (t *Tracker) enter(ctx context.Context, hold int64, in session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	var sharedLive []int64
	shared := 0
	for id, s := range t.active {
		if s.shared {
			shared++
			if s.ctx.Err() == nil {
				sharedLive = append(sharedLive, id)
			}
		}
		if s.shared && in.shared {
			continue
		}
		t.overlaps++
		if s.ctx.Err() == nil {
			t.live++
			t.liveEvents = append(t.liveEvents, Overlap{Hold: hold, Holder: in.holder, Token: in.token,
				Inside: id, InsideHolder: s.holder, InsideToken: s.token, At: now})
			t.liveDetail = append(t.liveDetail, fmt.Sprintf("hold %d (%s, token %d) entered while hold %d (%s, token %d) was inside, not told of a loss",
				hold, in.holder, in.token, id, s.holder, s.token))
		}
	}
	if in.shared {
		t.maxShared = max(t.maxShared, shared+1)
		if t.cap > 0 && len(sharedLive) >= t.cap {
			sort.Slice(sharedLive, func(i, j int) bool { return sharedLive[i] < sharedLive[j] })
			t.capEvents = append(t.capEvents, CapExcess{Hold: hold, Token: in.token, Inside: sharedLive, At: now})
		}
	}
	t.active[hold] = in
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
	t.record(Write{Hold: hold, Holder: holder, Token: token, Accepted: ok, Version: version, Told: told, Stalled: stalled})
	return ok, nil
}

// ReadFenced sends a shared hold's fenced read and records it.
func (t *Tracker) ReadFenced(ctx context.Context, hold int64, holder string, token uint64, told, stalled bool) (bool, error) {
	ok, _, version, err := t.store.ReadFenced(context.WithoutCancel(ctx), t.Name, token, holder)
	if err != nil {
		return false, err
	}
	t.record(Write{Hold: hold, Holder: holder, Token: token, Read: true, Accepted: ok, Version: version, Told: told, Stalled: stalled})
	return ok, nil
}

func (t *Tracker) record(w Write) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	w.Seq, w.At = t.seq, time.Now()
	t.writes = append(t.writes, w)
}

// Stats is what a tracker saw.
type Stats struct {
	Writes, Accepted, Rejected int
	// Reads: the shared holders' fenced reads, accepted and rejected.
	Reads, ReadsAccepted, ReadsRejected int
	// Overlaps: holds that entered while another hold was inside that
	// their modes exclude: what the resource would have suffered without
	// fencing.
	Overlaps int
	// LiveOverlaps: overlaps where the hold inside had not been told of
	// a loss (two holders both believing they held the lease).
	LiveOverlaps int
	// MaxShared: the most shared holds inside at once. CapExcess: shared
	// entries while at least the cap of untold shared holds were inside.
	MaxShared, CapExcess int
	// StaleAccepted: accepted writes whose token was not above the token
	// of an earlier accepted write or fenced read, and accepted reads
	// whose token was not above an earlier accepted write's. Fencing
	// makes this 0.
	StaleAccepted int
	// WronglyRejected: rejected writes whose token was above every token
	// accepted, rejected reads whose token was above every write's: the
	// resource refused what it should have taken.
	WronglyRejected int
	// RejectedUntold: rejected writes and reads from holders not told of
	// a loss, with a token below one accepted: a live holder superseded.
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
	// writes and reads counted in RejectedUntold, CapEvents the entries
	// beyond the cap, for a closer look.
	LiveOverlapEvents []Overlap
	UntoldRejections  []Write
	CapEvents         []CapExcess
}

// Stats checks the recorded writes and reads.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	writes := append([]Write(nil), t.writes...)
	st := Stats{Overlaps: t.overlaps, LiveOverlaps: t.live, Details: append([]string(nil), t.liveDetail...),
		LiveOverlapEvents: append([]Overlap(nil), t.liveEvents...), MaxShared: t.maxShared,
		CapExcess: len(t.capEvents), CapEvents: append([]CapExcess(nil), t.capEvents...)}
	t.mu.Unlock()
	var accepted []Write
	acceptedTokens := map[uint64]bool{}
	for _, w := range writes {
		st.count(w)
		if w.Accepted {
			accepted = append(accepted, w)
			if !w.Read {
				acceptedTokens[w.Token] = true
			}
		}
	}
	for _, w := range writes {
		switch {
		case w.Accepted:
		case !w.Read && acceptedTokens[w.Token]:
			st.RejectedReentrant++
		case !w.Told:
			st.RejectedUntold++
			st.UntoldRejections = append(st.UntoldRejections, w)
			st.Details = append(st.Details, fmt.Sprintf("%s of hold %d (%s, token %d) rejected, its holder not told of a loss", w.what(), w.Hold, w.Holder, w.Token))
		}
	}
	maxW, maxR := st.ordered(accepted)
	for _, w := range writes {
		if !w.Accepted && w.Token > maxW && (w.Read || w.Token > maxR) {
			st.WronglyRejected++
			st.Details = append(st.Details, fmt.Sprintf("%s of hold %d (token %d) rejected, above every accepted token", w.what(), w.Hold, w.Token))
		}
	}
	return st
}

func (w Write) what() string {
	if w.Read {
		return "read"
	}
	return "write"
}

// count adds w to the totals.
func (s *Stats) count(w Write) {
	switch {
	case w.Read:
		s.Reads++
		if w.Accepted {
			s.ReadsAccepted++
		} else {
			s.ReadsRejected++
		}
	case w.Accepted:
		s.Writes++
		s.Accepted++
		if w.Told {
			s.AcceptedTold++
		}
	default:
		s.Writes++
		s.Rejected++
	}
}

// ordered checks the accepted operations in the order the register took
// them, and returns the highest write and read tokens accepted.
func (s *Stats) ordered(accepted []Write) (maxW, maxR uint64) {
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].Version < accepted[j].Version })
	for i, w := range accepted {
		if i > 0 && w.Version == accepted[i-1].Version {
			s.StaleAccepted++
			s.Details = append(s.Details, fmt.Sprintf("two accepted operations with version %d", w.Version))
		}
		switch {
		case w.Read && w.Token <= maxW:
			s.StaleAccepted++
			s.Details = append(s.Details, fmt.Sprintf("read of hold %d (%s, token %d) accepted after a write with token %d", w.Hold, w.Holder, w.Token, maxW))
		case !w.Read && (w.Token <= maxW || w.Token <= maxR):
			s.StaleAccepted++
			s.Details = append(s.Details, fmt.Sprintf("write of hold %d (%s, token %d) accepted after token %d (reads: %d)", w.Hold, w.Holder, w.Token, maxW, maxR))
		}
		if w.Read {
			maxR = max(maxR, w.Token)
		} else {
			maxW = max(maxW, w.Token)
		}
	}
	return maxW, maxR
}

// Add sums two stats.
func (s Stats) Add(o Stats) Stats {
	s.Writes += o.Writes
	s.Accepted += o.Accepted
	s.Rejected += o.Rejected
	s.Reads += o.Reads
	s.ReadsAccepted += o.ReadsAccepted
	s.ReadsRejected += o.ReadsRejected
	s.Overlaps += o.Overlaps
	s.LiveOverlaps += o.LiveOverlaps
	s.MaxShared = max(s.MaxShared, o.MaxShared)
	s.CapExcess += o.CapExcess
	s.StaleAccepted += o.StaleAccepted
	s.WronglyRejected += o.WronglyRejected
	s.RejectedUntold += o.RejectedUntold
	s.RejectedReentrant += o.RejectedReentrant
	s.AcceptedTold += o.AcceptedTold
	s.Details = append(s.Details, o.Details...)
	s.LiveOverlapEvents = append(s.LiveOverlapEvents, o.LiveOverlapEvents...)
	s.UntoldRejections = append(s.UntoldRejections, o.UntoldRejections...)
	s.CapEvents = append(s.CapEvents, o.CapEvents...)
	return s
}
