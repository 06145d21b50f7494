package history

import "github.com/lockcoord/lockcoord/coordinator"

// mode is the mode of s's holds.
func (s state) mode() coordinator.Mode {
	if s.shared {
		return coordinator.ModeShared
	}
	return coordinator.ModeExclusive
}

// one returns n as the only next state when ok.
func one(n state, ok bool) []state {
	if !ok {
		return nil
	}
	return []state{n}
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
	s = prune(s, lo)
	switch in.Kind {
	case Acquire:
		return acquire(s, in, out, lo, hi)
	case Renew:
		return one(renew(s, in, out, lo, hi))
	case Release:
		return one(release(s, in, out, lo, hi))
	case Inspect:
		return one(inspect(s, out, lo, hi))
	}
	return nil
}

func acquire(s state, in Input, out Output, lo, hi int64) []state {
	switch {
	case out.Status == Conflict && out.Queued > 0 && out.Holder == "":
		// refused for the waiters queued ahead on a resource that may be
		// free: nothing changed
		s.now = lo
		return []state{s}
	case out.Status == Conflict:
		return one(refused(s, in, out, lo, hi))
	case out.Status != OK || out.Holder != in.Owner:
		return nil
	case out.Count == 1:
		return fresh(s, in, out, lo, hi)
	}
	h, ok := s.find(in.Owner)
	if !ok || !h.mayLive(lo) {
		return nil
	}
	if s.shared && in.Mode == coordinator.ModeExclusive {
		return one(upgrade(s, h, in, out, lo, hi))
	}
	return one(reenter(s, h, in, out, lo))
}

// fresh checks a new hold, taken at Redis time AcquiredAt with a token
// above every one issued: on a free resource (every hold there may have
// ended), in the mode and with the cap asked for; or, shared, beside
// shared holders (join).
func fresh(s state, in Input, out Output, lo, hi int64) []state {
	t := out.AcquiredAt
	if t < lo || t > hi || out.ExpiresAt != t+in.TTL || out.Token <= s.maxTok || out.Mode != in.Mode {
		return nil
	}
	h := hold{owner: in.Owner, count: 1, token: out.Token, expLo: out.ExpiresAt, expHi: out.ExpiresAt}
	shared := in.Mode == coordinator.ModeShared
	var next []state
	if _, ok := freeAt(s, t, t); ok && out.Permits == in.Permits {
		n := state{shared: shared, cap: in.Permits, now: t, maxTok: out.Token}
		next = append(next, n.with(h))
	}
	if n, ok := join(s, in, out, t); ok {
		n.now, n.maxTok = t, out.Token
		next = append(next, n.with(h))
	}
	return next
}

// join returns s ready for in's owner to join its shared holders at
// time t, as out reports: the resource is shared under a cap that in
// agrees with, and fewer holds than the cap are certainly alive. The
// holds that may have ended stay (they may still be alive); the
// owner's own, which must have ended (else it re-entered), goes.
func join(s state, in Input, out Output, t int64) (state, bool) {
	if !s.shared || in.Mode != coordinator.ModeShared || in.Permits != 0 && in.Permits != s.cap || out.Permits != s.cap {
		return s, false
	}
	var keep []hold
	live := 0
	for _, h := range s.list() {
		switch {
		case h.owner == in.Owner:
			if !h.mayEnd(t) {
				return s, false
			}
		case !h.mayLive(t):
		default:
			if !h.mayEnd(t) {
				live++
			}
			keep = append(keep, h)
		}
	}
	if len(keep) == 0 || s.cap > 0 && live >= s.cap {
		return s, false
	}
	s.holds = encodeHolds(keep)
	return s, true
}

// reenter checks a re-entry of the owner's live hold h: count + 1, the
// token kept, the expiry not shortened, the mode and cap kept (an
// exclusive holder asking shared stays exclusive).
func reenter(s state, h hold, in Input, out Output, lo int64) (state, bool) {
	if out.ExpiresAt < h.expLo-Slack || out.ExpiresAt < lo+in.TTL-Slack || out.Mode != s.mode() ||
		s.shared && out.Permits != s.cap || h.count >= 0 && out.Count != h.count+1 {
		return s, false
	}
	n, maxTok, ok := learn(h, s.maxTok, out.Token, -1)
	n.count, n.expLo, n.expHi = out.Count, out.ExpiresAt, out.ExpiresAt
	s = s.with(n)
	s.maxTok, s.now = maxTok, lo
	return s, ok
}

// upgrade checks the sole shared holder's exclusive re-entry: count + 1,
// a token above every one issued, every other hold ended, the resource
// exclusive from then on.
func upgrade(s state, h hold, in Input, out Output, lo, hi int64) (state, bool) {
	t, ok := endAt(s.others(in.Owner), lo, hi)
	if !ok || !h.mayLive(t) || out.Mode != coordinator.ModeExclusive || out.Token <= s.maxTok ||
		h.count >= 0 && out.Count != h.count+1 || out.ExpiresAt < h.expLo-Slack || out.ExpiresAt < lo+in.TTL-Slack {
		return s, false
	}
	n := hold{owner: in.Owner, count: out.Count, token: out.Token, expLo: out.ExpiresAt, expHi: out.ExpiresAt}
	return state{now: t, maxTok: out.Token}.with(n), true
}

// refused checks a conflict naming the live hold of another owner (with
// its count, token, expiry and mode).
func refused(s state, in Input, out Output, lo, hi int64) (state, bool) {
	h, ok := s.find(out.Holder)
	if !ok || out.Holder == in.Owner || !h.mayLive(lo) || lo > out.ExpiresAt+Slack ||
		out.ExpiresAt < h.expLo-Slack || out.ExpiresAt > h.expHi+Slack || out.Mode != s.mode() ||
		!conflicts(s, in, out, lo, hi) {
		return s, false
	}
	n, maxTok, ok := learn(h, s.maxTok, out.Token, out.Count)
	n.expLo, n.expHi = out.ExpiresAt, out.ExpiresAt
	s = s.with(n)
	s.maxTok, s.now = maxTok, lo
	return s, ok
}

// conflicts reports whether in can be refused in s as out says: an
// exclusive request by any hold of another owner, a shared one by an
// exclusive hold or by a full cap; an upgrade conflict only for a shared
// holder asking exclusive, and a plain one only when the owner's own hold
// may have ended (else it re-enters). The holders it counts lie between
// those certainly alive and those that may be.
func conflicts(s state, in Input, out Output, lo, hi int64) bool {
	mayLive, mustLive, others := 0, 0, 0
	for _, h := range s.list() {
		if h.mayLive(lo) {
			mayLive++
			if h.owner != in.Owner {
				others++
			}
		}
		if !h.mayEnd(hi) {
			mustLive++
		}
	}
	if out.Holders > 0 && (out.Holders > mayLive || out.Holders < mustLive) {
		return false
	}
	if out.Queued > 0 {
		return true // refused for the waiters queued ahead, whatever the holds
	}
	mine, ok := s.find(in.Owner)
	if out.Upgrade {
		return ok && mine.mayLive(lo) && s.shared && in.Mode == coordinator.ModeExclusive
	}
	if ok && !mine.mayEnd(hi) {
		return false
	}
	return !s.shared || in.Mode == coordinator.ModeExclusive || s.cap > 0 && others >= s.cap
}

func renew(s state, in Input, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK: // at Redis time ExpiresAt - TTL
		t := out.ExpiresAt - in.TTL
		h, ok := s.find(in.Owner)
		if !ok || out.Holder != in.Owner || t < lo || t > hi || !h.mayLive(t) ||
			(in.Token != 0 && out.Token != in.Token) || out.Mode != s.mode() {
			return s, false
		}
		n, maxTok, ok := learn(h, s.maxTok, out.Token, out.Count)
		n.expLo, n.expHi = out.ExpiresAt, out.ExpiresAt
		s = s.with(n)
		s.maxTok, s.now = maxTok, t
		return s, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	case NotHeld:
		return notHeld(s, in, out, lo, hi)
	case OtherToken:
		h, ok := s.find(in.Owner)
		if !ok || !h.mayLive(lo) || out.Token == in.Token {
			return s, false
		}
		n, maxTok, ok := learn(h, s.maxTok, out.Token, -1)
		s = s.with(n)
		s.maxTok, s.now = maxTok, lo
		return s, ok
	}
	return s, false
}

// notHeld checks a renewal or release refused because the owner holds
// nothing while another owner's hold may live: the owner's own hold, if
// any, has ended.
func notHeld(s state, in Input, out Output, lo, hi int64) (state, bool) {
	h, ok := s.find(out.Holder)
	if !ok || out.Holder == in.Owner || !h.mayLive(lo) {
		return s, false
	}
	if mine, ok := s.find(in.Owner); ok {
		if !mine.mayEnd(hi) {
			return s, false
		}
		s = s.without(in.Owner)
	}
	s.now = lo
	return s, true
}

func release(s state, in Input, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK:
		h, ok := s.find(in.Owner)
		if !ok || out.Holder != in.Owner || !h.mayLive(lo) {
			return s, false
		}
		if out.Count == 0 { // released
			if !in.All && h.count > 1 {
				return s, false
			}
			_, maxTok, ok := learn(h, s.maxTok, out.Token, -1)
			s = s.without(in.Owner)
			s.maxTok, s.now = maxTok, lo
			return s, ok
		}
		if in.All || (h.count >= 0 && out.Count != h.count-1) {
			return s, false
		}
		n, maxTok, ok := learn(h, s.maxTok, out.Token, -1)
		n.count = out.Count
		s = s.with(n)
		s.maxTok, s.now = maxTok, lo
		return s, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	case NotHeld:
		return notHeld(s, in, out, lo, hi)
	}
	return s, false
}

func inspect(s state, out Output, lo, hi int64) (state, bool) {
	switch out.Status {
	case OK:
		h, ok := s.find(out.Holder)
		if !ok || !h.mayLive(lo) || lo > out.ExpiresAt+Slack || out.Mode != s.mode() ||
			out.ExpiresAt < h.expLo-Slack || out.ExpiresAt > h.expHi+Slack {
			return s, false
		}
		n, maxTok, ok := learn(h, s.maxTok, out.Token, out.Count)
		n.expLo, n.expHi = out.ExpiresAt, out.ExpiresAt
		s = s.with(n)
		s.maxTok, s.now = maxTok, lo
		return s, ok
	case Free:
		t, ok := freeAt(s, lo, hi)
		return freed(s, t), ok
	}
	return s, false
}
