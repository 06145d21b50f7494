package history

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"strings"
)

// Slack is the tolerance, in milliseconds, of every comparison between
// times: the worker's wall clock and Redis's TIME are one clock on one
// host, but are read at slightly different moments and rounded to
// milliseconds, and a lease key's expiry is set from the script's time
// snapshot while expires_at is computed from TIME.
const Slack = 5

// far is a time after every other (an expiry pushed out by an operation
// whose time is unknown).
const far = math.MaxInt64 / 4

// state is one possible state of a lease in Redis.
type state struct {
	holder string // "" when free
	count  int    // hold count; -1 unknown
	token  uint64 // 0 unknown
	// above is, while token is unknown, the highest token issued before
	// the lease: its token is higher
	above uint64
	// the lease lives until some time in [expLo, expHi] (Unix ms, Redis
	// time): exact when Redis reported it, a range after an operation with
	// an unknown outcome or time
	expLo, expHi int64
	// now is the earliest Redis time the next operation can run at: Redis
	// runs operations one at a time, its clock going forward.
	now int64
	// maxTok is the highest token known to have been issued: a new lease
	// must get a higher one, also after Redis lost its data.
	maxTok uint64
	// pending are the operations of unknown outcome that may still be
	// applied (see entry): each can take effect before any later
	// operation, up to its return time.
	pending string
}

func (s state) String() string {
	if s.holder == "" {
		return fmt.Sprintf("free (now>=%d, max token %d, %d pending)", s.now, s.maxTok, len(s.pending)/entrySize)
	}
	hi := fmt.Sprint(s.expHi)
	if s.expHi >= far {
		hi = "?"
	}
	return fmt.Sprintf("%s count=%d token=%d expires in [%d,%s] (now>=%d, max token %d, %d pending)",
		s.holder, s.count, s.token, s.expLo, hi, s.now, s.maxTok, len(s.pending)/entrySize)
}

// window returns the earliest and latest Redis time op can run at in s.
func window(s state, in Input) (lo, hi int64) {
	lo = max(s.now, in.CallMs-Slack)
	hi = far
	if in.RetMs != never {
		hi = in.RetMs + Slack
	}
	return lo, hi
}

// alive reports whether s's lease can be alive at a time in [lo, hi].
func alive(s state, lo int64) bool {
	return s.holder != "" && lo <= s.expHi+Slack
}

// freeAt returns the earliest time in [lo, hi] at which s's resource can
// be free.
func freeAt(s state, lo, hi int64) (int64, bool) {
	if s.holder == "" {
		return lo, lo <= hi
	}
	t := max(lo, s.expLo+1-Slack)
	return t, t <= hi
}

// learn checks an observed token and count against s's (either may be
// unknown in s) and returns s with them known.
func learn(s state, token uint64, count int) (state, bool) {
	if s.token != 0 && token != s.token || s.token == 0 && token <= s.above {
		return s, false
	}
	if s.count >= 0 && count >= 0 && count != s.count {
		return s, false
	}
	s.token, s.above = token, 0
	if count >= 0 {
		s.count = count
	}
	s.maxTok = max(s.maxTok, token)
	return s, true
}

func freed(s state, now int64) state {
	return state{now: now, maxTok: s.maxTok}
}

// model is the lease model of one resource's history: the operations of
// unknown outcome, by Seq.
type model struct {
	// the operations of unknown outcome fall into classes of operations
	// that would do the same (kind, owner, TTL, token, all): class[seq]
	class map[int32]int32
	rep   []Input // a representative of each class
}

func newModel(unknown []Input) *model {
	m := &model{class: map[int32]int32{}}
	ids := map[Input]int32{}
	for _, in := range unknown {
		k := Input{Kind: in.Kind, Owner: in.Owner, TTL: in.TTL, Token: in.Token, All: in.All}
		id, ok := ids[k]
		if !ok {
			id = int32(len(m.rep))
			ids[k] = id
			m.rep = append(m.rep, k)
		}
		m.class[in.Seq] = id
	}
	return m
}

// The pending operations of a state are a multiset of classes: entries of
// entrySize bytes, ascending by class: class (4 bytes), how many (4), the
// earliest call and the latest return of the class's pending operations,
// Unix ms (8 each).
const entrySize = 24

type entry struct {
	class  int32
	n      int32
	lo, hi int64
}

func getEntry(p string, i int) entry {
	b := []byte(p[i : i+entrySize])
	return entry{
		class: int32(binary.LittleEndian.Uint32(b)),
		n:     int32(binary.LittleEndian.Uint32(b[4:])),
		lo:    int64(binary.LittleEndian.Uint64(b[8:])),
		hi:    int64(binary.LittleEndian.Uint64(b[16:])),
	}
}

func (e entry) bytes() string {
	var b [entrySize]byte
	binary.LittleEndian.PutUint32(b[:], uint32(e.class))
	binary.LittleEndian.PutUint32(b[4:], uint32(e.n))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.lo))
	binary.LittleEndian.PutUint64(b[16:], uint64(e.hi))
	return string(b[:])
}

// addPending adds an operation of class c run between lo and hi.
func addPending(p string, c int32, lo, hi int64) string {
	i := 0
	for ; i < len(p); i += entrySize {
		e := getEntry(p, i)
		if e.class == c {
			e.n++
			e.lo, e.hi = min(e.lo, lo), max(e.hi, hi)
			return p[:i] + e.bytes() + p[i+entrySize:]
		}
		if e.class > c {
			break
		}
	}
	return p[:i] + entry{c, 1, lo, hi}.bytes() + p[i:]
}

// takePending removes one operation of the entry at i.
func takePending(p string, i int) string {
	e := getEntry(p, i)
	if e.n > 1 {
		e.n--
		return p[:i] + e.bytes() + p[i+entrySize:]
	}
	return p[:i] + p[i+entrySize:]
}

// step returns the states s can move to by the operation (in, out); none
// when the operation cannot have happened in s. Before it, any operation
// of unknown outcome still pending may take effect; an operation of
// unknown outcome itself joins the pending ones.
func (m *model) step(s state, in Input, out Output) []state {
	if in.Kind != Wipe && out.Status == Unknown {
		// no effect yet: it joins the pending operations (the others wait
		// for the next operation whose outcome is known)
		if in.Kind != Inspect { // a read has no effect
			s.pending = addPending(s.pending, m.class[in.Seq], in.CallMs, in.RetMs)
		}
		return []state{s}
	}
	var next []state
	for _, x := range m.closure(s, in) {
		for _, n := range stepOne(x, in, out) {
			n.pending = x.pending
			next = append(next, n)
		}
	}
	return dedupe(next)
}

// closure returns the states reachable from s by applying pending
// operations of unknown outcome (any of them, in any order) before in,
// then drops from each state the pending operations that can no longer
// run at or after in's start. An applied operation leaves now as it was
// (it ran at some time in its window, at least now), which keeps the
// sets small at the price of a little precision; a renewal stays
// pending, as renewing again changes nothing a renewal cannot.
func (m *model) closure(s state, in Input) []state {
	_, bound := window(s, in) // no effect can come after in's latest time
	seen := map[state]bool{s: true}
	queue := []state{s}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		for i := 0; i < len(x.pending); i += entrySize {
			e := getEntry(x.pending, i)
			p := m.rep[e.class]
			p.CallMs, p.RetMs = e.lo, e.hi
			lo, hi := window(x, p)
			hi = min(hi, bound)
			if lo > hi {
				continue
			}
			for _, n := range applied(x, p, lo, hi) {
				if n.holder != "" && n.expLo > n.expHi {
					continue
				}
				n.now = x.now
				n.pending = x.pending
				if p.Kind != Renew {
					n.pending = takePending(x.pending, i)
				}
				if !seen[n] {
					seen[n] = true
					queue = append(queue, n)
				}
			}
		}
	}
	out := make([]state, 0, len(seen))
	for x := range seen {
		start := max(x.now, in.CallMs-Slack)
		for i := 0; i < len(x.pending); {
			if e := getEntry(x.pending, i); e.hi != never && e.hi+Slack < start {
				x.pending = x.pending[:i] + x.pending[i+entrySize:] // never applied
				continue
			}
			i += entrySize
		}
		out = append(out, x)
	}
	return dedupe(out)
}

func dedupe(states []state) []state {
	if len(states) < 2 {
		return states
	}
	seen := make(map[state]bool, len(states))
	out := states[:0]
	for _, x := range states {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// stepOne applies an operation whose outcome is known (or a wipe).
func stepOne(s state, in Input, out Output) []state {
	if in.Kind == Wipe {
		return []state{freed(s, s.now)}
	}
	lo, hi := window(s, in)
	if lo > hi {
		return nil
	}
	one := func(n state, ok bool) []state {
		if !ok {
			return nil
		}
		return []state{n}
	}
	switch in.Kind {
	case Acquire:
		return one(acquire(s, in, out, lo, hi))
	case Renew:
		return one(renew(s, in, out, lo, hi))
	case Release:
		return one(release(s, in, out, lo, hi))
	case Inspect:
		return one(inspect(s, out, lo, hi))
	}
	return nil
}

func acquire(s state, in Input, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK:
		if out.Holder != in.Owner {
			return s, false
		}
		if out.Count == 1 { // a new lease, at Redis time AcquiredAt
			t := out.AcquiredAt
			if t < lo || t > hi || out.ExpiresAt != t+in.TTL || out.Token <= s.maxTok {
				return s, false
			}
			if _, ok := freeAt(s, t, t); !ok {
				return s, false
			}
			return state{holder: in.Owner, count: 1, token: out.Token, expLo: out.ExpiresAt, expHi: out.ExpiresAt,
				now: t, maxTok: out.Token}, true
		}
		// re-entered: the owner's live lease, count + 1, expiry not shortened
		if s.holder != in.Owner || !alive(s, lo) || out.ExpiresAt < s.expLo-Slack || out.ExpiresAt < lo+in.TTL-Slack {
			return s, false
		}
		if s.count >= 0 && out.Count != s.count+1 {
			return s, false
		}
		n, ok := learn(s, out.Token, -1)
		n.count, n.expLo, n.expHi, n.now = out.Count, out.ExpiresAt, out.ExpiresAt, lo
		return n, ok
	case Conflict:
		return held(s, in, out, lo)
	}
	return s, false
}

// held checks a reply naming the live lease of another owner (with its
// count, token and expiry).
func held(s state, in Input, out Output, lo int64) (state, bool) {
	if s.holder != out.Holder || out.Holder == in.Owner || !alive(s, lo) ||
		lo > out.ExpiresAt+Slack || out.ExpiresAt < s.expLo-Slack || out.ExpiresAt > s.expHi+Slack {
		return s, false
	}
	n, ok := learn(s, out.Token, out.Count)
	n.expLo, n.expHi, n.now = out.ExpiresAt, out.ExpiresAt, lo
	return n, ok
}

func renew(s state, in Input, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK: // at Redis time ExpiresAt - TTL
		t := out.ExpiresAt - in.TTL
		if out.Holder != in.Owner || s.holder != in.Owner || t < lo || t > hi || !alive(s, t) ||
			(in.Token != 0 && out.Token != in.Token) {
			return s, false
		}
		n, ok := learn(s, out.Token, out.Count)
		n.expLo, n.expHi, n.now = out.ExpiresAt, out.ExpiresAt, t
		return n, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	case NotHeld:
		if s.holder != out.Holder || out.Holder == in.Owner || !alive(s, lo) {
			return s, false
		}
		n := s
		n.now = lo
		return n, true
	case OtherToken:
		if s.holder != in.Owner || !alive(s, lo) || out.Token == in.Token {
			return s, false
		}
		n, ok := learn(s, out.Token, -1)
		n.now = lo
		return n, ok
	}
	return s, false
}

func release(s state, in Input, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK:
		if out.Holder != in.Owner || s.holder != in.Owner || !alive(s, lo) {
			return s, false
		}
		if out.Count == 0 { // released
			if !in.All && s.count > 1 {
				return s, false
			}
			n, ok := learn(s, out.Token, -1)
			return freed(n, lo), ok
		}
		if in.All || (s.count >= 0 && out.Count != s.count-1) {
			return s, false
		}
		n, ok := learn(s, out.Token, -1)
		n.count, n.now = out.Count, lo
		return n, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	case NotHeld:
		if s.holder != out.Holder || out.Holder == in.Owner || !alive(s, lo) {
			return s, false
		}
		n := s
		n.now = lo
		return n, true
	}
	return s, false
}

func inspect(s state, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK:
		if s.holder != out.Holder || !alive(s, lo) || lo > out.ExpiresAt+Slack ||
			out.ExpiresAt < s.expLo-Slack || out.ExpiresAt > s.expHi+Slack {
			return s, false
		}
		n, ok := learn(s, out.Token, out.Count)
		n.expLo, n.expHi, n.now = out.ExpiresAt, out.ExpiresAt, lo
		return n, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	}
	return s, false
}

// applied returns the states after an operation of unknown outcome took
// effect, at a time in [lo, hi] (hi is far when unbounded): on a free
// resource, or on the owner's live lease. None when it can have no effect
// (a conflict, a lease of another owner): it then stays pending.
func applied(s state, in Input, lo, hi int64) []state {
	late := int64(far) // the latest expiry it can set
	if hi < far {
		late = hi + in.TTL
	}
	var states []state
	switch in.Kind {
	case Acquire:
		if t, ok := freeAt(s, lo, hi); ok {
			// a new lease whose token is unknown
			states = append(states, state{holder: in.Owner, count: 1, above: s.maxTok,
				expLo: t + in.TTL, expHi: late, now: t, maxTok: s.maxTok})
		}
		if s.holder == in.Owner && alive(s, lo) {
			n := s
			if n.count >= 0 {
				n.count++
			}
			n.expLo, n.expHi, n.now = max(s.expLo, lo+in.TTL), max(s.expHi, late), lo
			states = append(states, n)
		}
	case Renew:
		if s.holder == in.Owner && alive(s, lo) && (in.Token == 0 || s.token == 0 || s.token == in.Token) {
			n := s
			if in.Token != 0 {
				n.token = in.Token
			}
			n.expLo, n.expHi, n.now = lo+in.TTL, max(late, lo+in.TTL), lo
			states = append(states, n)
		}
	case Release:
		if s.holder == in.Owner && alive(s, lo) {
			if in.All || s.count == 1 || s.count < 0 {
				states = append(states, freed(s, lo))
			}
			if !in.All && s.count != 1 {
				n := s
				if n.count > 1 {
					n.count--
				}
				n.now = lo
				states = append(states, n)
			}
		}
	}
	return states
}

// compareStates orders states, for canonical sets.
func compareStates(a, b state) int {
	return cmp.Or(
		strings.Compare(a.holder, b.holder),
		cmp.Compare(a.count, b.count),
		cmp.Compare(a.token, b.token),
		cmp.Compare(a.above, b.above),
		cmp.Compare(a.expLo, b.expLo),
		cmp.Compare(a.expHi, b.expHi),
		cmp.Compare(a.now, b.now),
		cmp.Compare(a.maxTok, b.maxTok),
		strings.Compare(a.pending, b.pending),
	)
}

// hash adds s to h.
func (s state) hash(h hash.Hash64) {
	var b [8]byte
	num := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		_, _ = h.Write(b[:])
	}
	_, _ = h.Write([]byte(s.holder))
	num(uint64(s.count))
	num(s.token)
	num(s.above)
	num(uint64(s.expLo))
	num(uint64(s.expHi))
	num(uint64(s.now))
	num(s.maxTok)
	_, _ = h.Write([]byte(s.pending))
}
