package history

import (
	"fmt"
	"math"
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
}

func (s state) String() string {
	if s.holder == "" {
		return fmt.Sprintf("free (now>=%d, max token %d)", s.now, s.maxTok)
	}
	hi := fmt.Sprint(s.expHi)
	if s.expHi >= far {
		hi = "?"
	}
	return fmt.Sprintf("%s count=%d token=%d expires in [%d,%s] (now>=%d, max token %d)",
		s.holder, s.count, s.token, s.expLo, hi, s.now, s.maxTok)
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

// step returns the states s can move to by the operation (in, out); none
// when the operation cannot have happened in s.
func step(s state, in Input, out Output) []state {
	if in.Kind == Wipe {
		return []state{freed(s, s.now)}
	}
	lo, hi := window(s, in)
	if lo > hi {
		return nil
	}
	if out.Status == Unknown {
		return unknown(s, in, lo)
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

// unknown returns the states after an operation whose outcome is unknown,
// run at the earliest time lo: not applied, or applied (on a free
// resource, or on the owner's live lease). Porcupine tries later points of
// the history for it too: its return time is unbounded.
func unknown(s state, in Input, lo int64) []state {
	states := []state{s}
	switch in.Kind {
	case Acquire:
		if t, ok := freeAt(s, lo, far); ok {
			// a new lease whose token is unknown
			states = append(states, state{holder: in.Owner, count: 1, above: s.maxTok,
				expLo: t + in.TTL, expHi: far, now: t, maxTok: s.maxTok})
		}
		if s.holder == in.Owner && alive(s, lo) {
			n := s
			if n.count >= 0 {
				n.count++
			}
			n.expLo, n.expHi, n.now = max(s.expLo, lo+in.TTL), far, lo
			states = append(states, n)
		}
	case Renew:
		if s.holder == in.Owner && alive(s, lo) && (in.Token == 0 || s.token == 0 || s.token == in.Token) {
			n := s
			if in.Token != 0 {
				n.token = in.Token
			}
			n.expLo, n.expHi, n.now = lo+in.TTL, far, lo
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
