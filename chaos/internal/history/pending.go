package history

import "github.com/lockcoord/lockcoord/coordinator"

// applied returns the states after an operation of unknown outcome took
// effect, at a time in [lo, hi] (hi is far when unbounded): on a free
// resource, on the owner's live hold, or beside shared holders. None
// when it can have no effect (a conflict, a hold of another owner): it
// then stays pending.
func applied(s state, in Input, lo, hi int64) []state {
	late := int64(far) // the latest expiry it can set
	if hi < far {
		late = hi + in.TTL
	}
	switch in.Kind {
	case Acquire:
		return appliedAcquire(s, in, lo, hi, late)
	case Renew:
		h, ok := s.find(in.Owner)
		if ok && h.mayLive(lo) && (in.Token == 0 || h.token == 0 || h.token == in.Token) {
			if in.Token != 0 {
				h.token = in.Token
			}
			h.expLo, h.expHi = lo+in.TTL, max(late, lo+in.TTL)
			n := s.with(h)
			n.now = lo
			return []state{n}
		}
	case Release:
		return appliedRelease(s, in, lo)
	}
	return nil
}

// inc adds one to a hold count (-1: unknown).
func inc(count int) int {
	if count < 0 {
		return count
	}
	return count + 1
}

func appliedAcquire(s state, in Input, lo, hi, late int64) []state {
	var next []state
	shared := in.Mode == coordinator.ModeShared
	fresh := hold{owner: in.Owner, count: 1, above: s.maxTok, expHi: late}
	if t, ok := freeAt(s, lo, hi); ok { // a new hold whose token is unknown
		n := state{shared: shared, cap: in.Permits, now: t, maxTok: s.maxTok}
		fresh.expLo = t + in.TTL
		next = append(next, n.with(fresh))
	}
	h, mine := s.find(in.Owner)
	compatible := !s.shared || !shared || in.Permits == 0 || in.Permits == s.cap
	switch {
	case mine && h.mayLive(lo) && s.shared && !shared: // an upgrade
		if t, ok := endAt(s.others(in.Owner), lo, hi); ok {
			n := state{now: t, maxTok: s.maxTok}
			next = append(next, n.with(hold{owner: in.Owner, count: inc(h.count), above: s.maxTok,
				expLo: max(h.expLo, t+in.TTL), expHi: max(h.expHi, late)}))
		}
	case mine && h.mayLive(lo) && compatible: // a re-entry
		h.count = inc(h.count)
		h.expLo, h.expHi = max(h.expLo, lo+in.TTL), max(h.expHi, late)
		n := s.with(h)
		n.now = lo
		next = append(next, n)
	}
	if !shared || !s.shared || !compatible || mine && !h.mayEnd(hi) {
		return next
	}
	// joining the shared holders, if fewer than the cap are certainly
	// alive
	others, live := s.others(in.Owner), 0
	for _, o := range others {
		if !o.mayEnd(hi) {
			live++
		}
	}
	if len(others) > 0 && (s.cap == 0 || live < s.cap) {
		fresh.expLo = lo + in.TTL
		n := s
		n.holds, n.now = encodeHolds(append(others, fresh)), lo
		next = append(next, n)
	}
	return next
}

func appliedRelease(s state, in Input, lo int64) []state {
	h, ok := s.find(in.Owner)
	if !ok || !h.mayLive(lo) {
		return nil
	}
	var next []state
	if in.All || h.count == 1 || h.count < 0 {
		n := s.without(in.Owner)
		n.now = lo
		next = append(next, n)
	}
	if !in.All && h.count != 1 {
		if h.count > 1 {
			h.count--
		}
		n := s.with(h)
		n.now = lo
		next = append(next, n)
	}
	return next
}
