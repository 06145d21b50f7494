package coordinator

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// EventKind says what a lease event reports.
type EventKind string

// The kinds of lease events: the event field of the store's audit outbox
// (docs/redis-keys.md), and EventGap.
const (
	EventAcquired    EventKind = "acquired"    // a fresh hold: a new token
	EventReentered   EventKind = "reentered"   // the owner acquired again (count + 1); an upgrade too
	EventRenewed     EventKind = "renewed"     // the expiry moved
	EventDecremented EventKind = "decremented" // a release that left holds
	EventReleased    EventKind = "released"    // the owner's last hold released (Count 0)
	EventForced      EventKind = "forced"      // removed by an operator (redisstore.ForceRelease)
	EventExpired     EventKind = "expired"     // the lease's TTL ran out
	// EventGap reports that events may be missing before the next one:
	// the watcher's buffer overflowed, the store trimmed its log past
	// what the watcher had read, or the store lost its data. Its Lease
	// names only the watched resource (ID "" for a whole type) and Gap
	// says why. After a gap, read the current state (Inspect, Holders).
	EventGap EventKind = "gap"
)

// EventBuffer is how many events a watcher's channel holds. A watcher that
// falls further behind is never waited for: the events that do not fit
// are dropped and an EventGap takes their place.
const EventBuffer = 256

// Event is one change of a lease, as the store recorded it.
type Event struct {
	Kind EventKind
	// Lease is the lease after the change: Count 0 when it ended
	// (released, forced, expired), ExpiresAt the expiry it had then.
	// Fields the store's record lacks (Remaining, Mode of an older
	// record) are zero.
	Lease Lease
	Time  time.Time // the store's time of the change (Redis TIME); zero for EventGap
	// ID is the store's id of the event (the stream entry id), ordered
	// within a partition; "" for EventGap.
	ID  string
	Gap string // EventGap: why events may be missing
}

// Watcher is an optional capability of a Store: a store that reports the
// changes of its leases as they happen. A Coordinator finds it by a type
// assertion (Coordinator.Watch); redisstore.Store implements it by
// reading its audit outbox. storetest.RunWatcher is its conformance
// suite.
type Watcher interface {
	// Watch delivers the events of r (of every resource of r.Type when
	// r.ID is "") that happen after Watch returned, in the order the
	// store applied them on each partition, until ctx ends; the channel
	// is closed then, once the store stopped writing to it and every
	// goroutine it started for it has ended. A reader that falls behind
	// gets an EventGap instead of the events that did not fit in
	// EventBuffer; it never blocks the store. A store that cannot report
	// events (its log is switched off) returns an error wrapping
	// ErrUnsupported.
	Watch(ctx context.Context, r Resource) (<-chan Event, error)
}

// EventSink is the channel of one watcher, for Watcher implementations:
// Send never blocks, and when the channel is full it puts one EventGap
// in the slot it keeps for that, so a gap is reported at once and never
// silently. It is safe for concurrent use.
type EventSink struct {
	r      Resource
	mu     sync.Mutex
	ch     chan Event
	closed bool
	gap    bool // the last event sent is a gap
}

// NewEventSink returns the sink of a watcher of r (of every resource of
// r.Type when r.ID is ""), with a channel of EventBuffer events.
func NewEventSink(r Resource) *EventSink {
	return &EventSink{r: r, ch: make(chan Event, EventBuffer)}
}

// C returns the watcher's channel.
func (s *EventSink) C() <-chan Event { return s.ch }

// Resource returns what the sink watches.
func (s *EventSink) Resource() Resource { return s.r }

// Matches reports whether the sink watches r.
func (s *EventSink) Matches(r Resource) bool {
	return r.Type == s.r.Type && (s.r.ID == "" || r.ID == s.r.ID)
}

// Send delivers ev, or a gap when the channel is full; nothing after
// Close.
func (s *EventSink) Send(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if len(s.ch) < cap(s.ch)-1 {
		s.ch <- ev
		s.gap = false
		return
	}
	if !s.gap {
		s.ch <- s.gapEvent("the watcher fell more than " + strconv.Itoa(EventBuffer) + " events behind")
		s.gap = true
	}
}

// Gap reports that events may be missing, for the reason given, unless
// the last event sent is a gap the watcher has not read yet.
func (s *EventSink) Gap(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.gap && len(s.ch) > 0 {
		return
	}
	if len(s.ch) < cap(s.ch) {
		s.ch <- s.gapEvent(reason)
		s.gap = true
	}
}

func (s *EventSink) gapEvent(reason string) Event {
	return Event{Kind: EventGap, Lease: Lease{Resource: s.r}, Gap: reason}
}

// Close closes the channel; later sends are dropped. A second Close does
// nothing.
func (s *EventSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}
