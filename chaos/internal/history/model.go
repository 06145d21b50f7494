package history

import "encoding/binary"

// model is the lease model of one resource's history: the operations of
// unknown outcome, by Seq.
type model struct {
	// the operations of unknown outcome fall into classes of operations
	// that would do the same (kind, owner, TTL, token, all, mode, cap):
	// class[seq]
	class map[int32]int32
	rep   []Input // a representative of each class
}

func newModel(unknown []Input) *model {
	m := &model{class: map[int32]int32{}}
	ids := map[Input]int32{}
	for _, in := range unknown {
		k := Input{Kind: in.Kind, Owner: in.Owner, TTL: in.TTL, Token: in.Token, All: in.All, Mode: in.Mode, Permits: in.Permits}
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
