package storetest

import (
	"context"
	"strconv"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

var _ coordinator.Watcher = (*MemStore)(nil)

// Watch implements coordinator.Watcher. A MemStore reports an expiry when
// it next looks at the resource (any call on it, Advance, Expire), and
// LoseData as an EventGap.
func (s *MemStore) Watch(ctx context.Context, r coordinator.Resource) (<-chan coordinator.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := coordinator.ValidateType(r.Type); err != nil {
		return nil, err
	}
	if r.ID != "" {
		if err := r.Validate(); err != nil {
			return nil, err
		}
	}
	sink := coordinator.NewEventSink(r)
	s.mu.Lock()
	s.sinks[sink] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.sinks, sink)
		sink.Close()
	})
	return sink.C(), nil
}

// emit reports a change of lease l at time at to the watchers of its
// resource; s.mu is held.
func (s *MemStore) emit(kind coordinator.EventKind, l coordinator.Lease, at time.Time) {
	if len(s.sinks) == 0 {
		return
	}
	s.seq++
	l.Remaining = 0
	switch kind {
	case coordinator.EventReleased, coordinator.EventForced, coordinator.EventExpired:
		l.Count = 0
	default:
		l.Remaining = l.ExpiresAt.Sub(at)
	}
	ev := coordinator.Event{Kind: kind, Lease: l, Time: at, ID: idOf(at, s.seq)}
	for sink := range s.sinks {
		if sink.Matches(l.Resource) {
			sink.Send(ev)
		}
	}
}

// idOf returns an event id in the form of a Redis stream entry id.
func idOf(at time.Time, seq uint64) string {
	return strconv.FormatInt(at.UnixMilli(), 10) + "-" + strconv.FormatUint(seq, 10)
}

// gap reports a gap to every watcher; s.mu is held.
func (s *MemStore) gap(reason string) {
	for sink := range s.sinks {
		sink.Gap(reason)
	}
}

// pruneAll drops every expired hold, reporting the expiries.
func (s *MemStore) pruneAll(now time.Time) {
	for r := range s.res {
		s.prune(r, now)
	}
}
