package history

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"slices"
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

// hold is one owner's hold on the resource.
type hold struct {
	owner string
	count int    // hold count; -1 unknown
	token uint64 // 0 unknown
	// above is, while token is unknown, the highest token issued before
	// the hold: its token is higher
	above uint64
	// the hold lives until some time in [expLo, expHi] (Unix ms, Redis
	// time): exact when Redis reported it, a range after an operation with
	// an unknown outcome or time
	expLo, expHi int64
}

// mayLive reports whether h can be alive at Redis time t.
func (h hold) mayLive(t int64) bool { return t <= h.expHi+Slack }

// mayEnd reports whether h can have expired by Redis time t.
func (h hold) mayEnd(t int64) bool { return t >= h.expLo+1-Slack }

func (h hold) String() string {
	hi := fmt.Sprint(h.expHi)
	if h.expHi >= far {
		hi = "?"
	}
	return fmt.Sprintf("%s count=%d token=%d expires in [%d,%s]", h.owner, h.count, h.token, h.expLo, hi)
}

// state is one possible state of a resource in Redis: its holders, in
// one mode. It is comparable (a map key): the holds are encoded in a
// string, sorted by owner.
type state struct {
	shared bool   // the holds are shared (exclusive: at most one hold)
	cap    int    // shared: the cap recorded by the first holder, 0 none
	holds  string // the holds (encodeHolds)
	// now is the earliest Redis time the next operation can run at: Redis
	// runs operations one at a time, its clock going forward.
	now int64
	// maxTok is the highest token known to have been issued: a new hold
	// (and an upgrade) must get a higher one, also after Redis lost its
	// data.
	maxTok uint64
	// pending are the operations of unknown outcome that may still be
	// applied (see entry): each can take effect before any later
	// operation, up to its return time.
	pending string
}

// holdSize is the encoded size of a hold without its owner: the owner's
// length (2 bytes), count, token, above, expLo, expHi (8 each).
const holdSize = 2 + 5*8

func encodeHolds(hs []hold) string {
	slices.SortFunc(hs, func(a, b hold) int { return strings.Compare(a.owner, b.owner) })
	var b []byte
	for _, h := range hs {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h.owner)))
		b = append(b, h.owner...)
		for _, v := range [5]uint64{uint64(h.count), h.token, h.above, uint64(h.expLo), uint64(h.expHi)} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return string(b)
}

// list returns s's holds, sorted by owner.
func (s state) list() []hold {
	var hs []hold
	for p := s.holds; len(p) > 0; {
		n := int(binary.LittleEndian.Uint16([]byte(p[:2])))
		h := hold{owner: p[2 : 2+n]}
		b := []byte(p[2+n : holdSize+n])
		h.count = int(int64(binary.LittleEndian.Uint64(b)))
		h.token = binary.LittleEndian.Uint64(b[8:])
		h.above = binary.LittleEndian.Uint64(b[16:])
		h.expLo = int64(binary.LittleEndian.Uint64(b[24:]))
		h.expHi = int64(binary.LittleEndian.Uint64(b[32:]))
		hs = append(hs, h)
		p = p[holdSize+n:]
	}
	return hs
}

// find returns owner's hold.
func (s state) find(owner string) (hold, bool) {
	for _, h := range s.list() {
		if h.owner == owner {
			return h, true
		}
	}
	return hold{}, false
}

// with returns s with h, replacing the hold of h's owner.
func (s state) with(h hold) state {
	hs := slices.DeleteFunc(s.list(), func(x hold) bool { return x.owner == h.owner })
	s.holds = encodeHolds(append(hs, h))
	return s
}

// without returns s without owner's hold; free (mode and cap forgotten)
// when it was the last.
func (s state) without(owner string) state {
	hs := slices.DeleteFunc(s.list(), func(x hold) bool { return x.owner == owner })
	if len(hs) == 0 {
		s.shared, s.cap = false, 0
	}
	s.holds = encodeHolds(hs)
	return s
}

// others returns s's holds but owner's.
func (s state) others(owner string) []hold {
	return slices.DeleteFunc(s.list(), func(x hold) bool { return x.owner == owner })
}

// prune drops the holds that cannot be alive at lo or later.
func prune(s state, lo int64) state {
	for _, h := range s.list() {
		if !h.mayLive(lo) {
			s = s.without(h.owner)
		}
	}
	return s
}

func (s state) String() string {
	if s.holds == "" {
		return fmt.Sprintf("free (now>=%d, max token %d, %d pending)", s.now, s.maxTok, len(s.pending)/entrySize)
	}
	var parts []string
	for _, h := range s.list() {
		parts = append(parts, h.String())
	}
	mode := "exclusive"
	if s.shared {
		mode = fmt.Sprintf("shared cap=%d", s.cap)
	}
	return fmt.Sprintf("%s: %s (now>=%d, max token %d, %d pending)",
		mode, strings.Join(parts, ", "), s.now, s.maxTok, len(s.pending)/entrySize)
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

// endAt returns the earliest time in [lo, hi] by which every hold of hs
// can have expired.
func endAt(hs []hold, lo, hi int64) (int64, bool) {
	t := lo
	for _, h := range hs {
		t = max(t, h.expLo+1-Slack)
	}
	return t, t <= hi
}

// freeAt returns the earliest time in [lo, hi] at which s's resource can
// be free.
func freeAt(s state, lo, hi int64) (int64, bool) {
	return endAt(s.list(), lo, hi)
}

// learn checks an observed token and count against h's (either may be
// unknown in h) and returns h with them known, and the highest token.
func learn(h hold, maxTok, token uint64, count int) (hold, uint64, bool) {
	if h.token != 0 && token != h.token || h.token == 0 && token <= h.above {
		return h, maxTok, false
	}
	if h.count >= 0 && count >= 0 && count != h.count {
		return h, maxTok, false
	}
	h.token, h.above = token, 0
	if count >= 0 {
		h.count = count
	}
	return h, max(maxTok, token), true
}

func freed(s state, now int64) state {
	return state{now: now, maxTok: s.maxTok}
}

// compareStates orders states, for canonical sets.
func compareStates(a, b state) int {
	return cmp.Or(
		cmp.Compare(b2i(a.shared), b2i(b.shared)),
		cmp.Compare(a.cap, b.cap),
		strings.Compare(a.holds, b.holds),
		cmp.Compare(a.now, b.now),
		cmp.Compare(a.maxTok, b.maxTok),
		strings.Compare(a.pending, b.pending),
	)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hash adds s to h.
func (s state) hash(h hash.Hash64) {
	var b [8]byte
	num := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		_, _ = h.Write(b[:])
	}
	num(uint64(b2i(s.shared)))
	num(uint64(s.cap))
	_, _ = h.Write([]byte(s.holds))
	num(uint64(s.now))
	num(s.maxTok)
	_, _ = h.Write([]byte(s.pending))
}
