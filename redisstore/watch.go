package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

var _ coordinator.Watcher = (*Store)(nil)

// Reading the event streams for watchers.
var (
	// watchBlock is how long one XREAD BLOCK waits for news: it bounds
	// how long an idle reader takes to notice that its last watcher left
	// or that the stream was lost.
	watchBlock = time.Second
	// watchBatch is the most entries read from a stream at once.
	watchBatch int64 = 512
	// watchRetryMax bounds the backoff of a reader while Redis fails.
	watchRetryMax = time.Second
)

// Watch implements coordinator.Watcher by reading the partitions' event
// streams, the audit outbox (docs/redis-keys.md), from their last entry
// when Watch was called. A store reads each partition once for all its
// watchers and fans the events out: elsewhere than on Cluster one
// goroutine reads every watched partition with one XREAD BLOCK (one
// connection); on Cluster each partition has a reader of its own, as
// XREAD of several streams must stay in one slot.
//
// A reader checks, atomically with every read (MULTI: XINFO STREAM and
// XREAD), that nothing it had not read was trimmed (the stream's
// max-deleted-entry-id is past its cursor), and that the stream was not
// lost or replaced (a missing stream, fewer entries-added, a last id
// behind its cursor: a restart without persistence, a failover to a
// replica that lacked events). Each is an EventGap to the watchers of the
// partition. A connection lost meanwhile is not a gap: the reader
// resumes from its cursor. (miniredis reports neither deletions nor
// entries-added: there, only a lost stream is seen.)
//
// With the outbox switched off (WithOutbox(false)) there are no events to
// read: Watch returns an error wrapping coordinator.ErrUnsupported. A
// store of the same prefix writing without the outbox cannot be
// detected: its changes are simply not seen.
func (s *Store) Watch(ctx context.Context, r coordinator.Resource) (<-chan coordinator.Event, error) {
	if err := coordinator.ValidateType(r.Type); err != nil {
		return nil, err
	}
	if r.ID != "" {
		if err := r.Validate(); err != nil {
			return nil, err
		}
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	if !s.outbox {
		return nil, fmt.Errorf("redisstore: watch %s: %w: the outbox is switched off (WithOutbox(false)), so there are no events", r, coordinator.ErrUnsupported)
	}
	parts := []int{s.layout.Partition(r)}
	if r.ID == "" {
		parts = make([]int, s.layout.partitions)
		for p := range parts {
			parts[p] = p
		}
	}
	from, err := s.lastIDs(ctx, parts)
	if err != nil {
		return nil, fmt.Errorf("redisstore: watch %s: %w", r, err)
	}
	w := &watch{sink: coordinator.NewEventSink(r), from: from}
	s.watches.add(s, w)
	context.AfterFunc(ctx, func() { s.watches.remove(w) })
	return w.sink.C(), nil
}

// lastIDs returns the id of the last entry of each partition's stream,
// "0-0" for an empty or missing one: where a new watcher starts.
func (s *Store) lastIDs(ctx context.Context, parts []int) (map[int]string, error) {
	cmds := make([]*redis.XMessageSliceCmd, len(parts))
	_, err := s.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.XRevRangeN(ctx, s.parts[p].events, "+", "-", 1)
		}
		return nil
	})
	s.refreshOnFailure(err)
	if err != nil {
		return nil, fmt.Errorf("read the streams' last ids: %w", err)
	}
	from := make(map[int]string, len(parts))
	for i, p := range parts {
		from[p] = "0-0"
		if ms := cmds[i].Val(); len(ms) > 0 {
			from[p] = ms[0].ID
		}
	}
	return from, nil
}

// watch is one watcher: its sink, and the last entry of each partition
// it must not get (the streams' ends when it started).
type watch struct {
	sink *coordinator.EventSink
	from map[int]string
}

// watchHub keeps a store's readers of the event streams and their
// watchers. The zero value is ready.
type watchHub struct {
	mu       sync.Mutex
	readers  map[int]*reader // by partition on Cluster, -1 elsewhere
	failures atomic.Int64    // reads that failed, for tests
}

// reader reads the streams of its partitions and dispatches the entries
// to their watchers.
type reader struct {
	s       *Store
	cursors map[int]*cursor // partition -> where the reader is
	watches map[int][]*watch
	stop    chan struct{} // closed when the last watcher left
	done    chan struct{} // closed when the goroutine returned
}

// cursor is a reader's position in one partition's stream: the last id
// read, and the stream's entries-added then (0 when unknown).
type cursor struct {
	id    string
	added int64
}

// readerKey is the reader of partition p.
func (s *Store) readerKey(p int) int {
	if s.cluster {
		return p
	}
	return -1
}

// add registers w with the readers of its partitions, starting those
// that do not run.
func (h *watchHub) add(s *Store, w *watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readers == nil {
		h.readers = map[int]*reader{}
	}
	for p, from := range w.from {
		k := s.readerKey(p)
		rd := h.readers[k]
		if rd == nil {
			rd = &reader{s: s, cursors: map[int]*cursor{}, watches: map[int][]*watch{},
				stop: make(chan struct{}), done: make(chan struct{})}
			h.readers[k] = rd
			go rd.run(h)
		}
		if rd.cursors[p] == nil {
			rd.cursors[p] = &cursor{id: from}
		}
		rd.watches[p] = append(rd.watches[p], w)
	}
}

// remove unregisters w, stops the readers left without watchers, waits
// for them, and closes w's channel.
func (h *watchHub) remove(w *watch) {
	var stopped []*reader
	h.mu.Lock()
	for k, rd := range h.readers {
		for p, ws := range rd.watches {
			ws = slices.DeleteFunc(ws, func(x *watch) bool { return x == w })
			if len(ws) == 0 {
				delete(rd.watches, p)
				delete(rd.cursors, p)
			} else {
				rd.watches[p] = ws
			}
		}
		if len(rd.watches) == 0 {
			delete(h.readers, k)
			close(rd.stop)
			stopped = append(stopped, rd)
		}
	}
	h.mu.Unlock()
	for _, rd := range stopped {
		<-rd.done
	}
	w.sink.Close()
}

// stopped reports whether the reader's last watcher left.
func (rd *reader) stopped() bool {
	select {
	case <-rd.stop:
		return true
	default:
		return false
	}
}

// snapshot returns the reader's partitions, sorted, with their streams
// and cursors.
func (rd *reader) snapshot(h *watchHub) (parts []int, keys, ids []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p := range rd.cursors {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	for _, p := range parts {
		keys = append(keys, rd.s.parts[p].events)
		ids = append(ids, rd.cursors[p].id)
	}
	return parts, keys, ids
}

// run reads until the last watcher leaves: an atomic read with its gap
// checks, then, when it was not a full batch, an XREAD BLOCK that waits
// for news (its entries are read again by the next atomic read).
func (rd *reader) run(h *watchHub) {
	defer close(rd.done)
	swept := make(chan struct{})
	go rd.sweep(h, swept)
	defer func() { <-swept }()
	delay := 10 * time.Millisecond
	for !rd.stopped() {
		parts, keys, ids := rd.snapshot(h)
		full, err := rd.readOnce(h, parts, keys, ids)
		if err == nil && !full {
			streams := append(slices.Clone(keys), rd.cursorIDs(h, parts)...)
			err = rd.s.client.XRead(context.Background(), &redis.XReadArgs{Streams: streams, Count: 1, Block: watchBlock}).Err()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
		}
		if err == nil {
			delay = 10 * time.Millisecond
			continue
		}
		rd.s.refreshOnFailure(err)
		h.failures.Add(1)
		if !rd.sleep(delay) {
			return
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// cursorIDs returns the cursors of parts.
func (rd *reader) cursorIDs(h *watchHub, parts []int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = "0-0"
		if c := rd.cursors[p]; c != nil {
			ids[i] = c.id
		}
	}
	return ids
}

// sleep waits d or until the reader stops; it reports whether it runs on.
func (rd *reader) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-rd.stop:
		return false
	case <-t.C:
		return true
	}
}

// readOnce reads what is new in the streams in one transaction with
// their XINFO STREAM, reports the gaps it shows and dispatches the
// entries. It reports whether a stream gave a full batch (more may be
// waiting).
func (rd *reader) readOnce(h *watchHub, parts []int, keys, ids []string) (bool, error) {
	ctx := context.Background()
	infos := make([]*redis.XInfoStreamCmd, len(keys))
	var xr *redis.XStreamSliceCmd
	_, err := rd.s.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range keys {
			infos[i] = pipe.XInfoStream(ctx, k)
		}
		xr = pipe.XRead(ctx, &redis.XReadArgs{Streams: append(slices.Clone(keys), ids...), Count: watchBatch, Block: -1})
		return nil
	})
	if err != nil && xr.Err() != nil && !errors.Is(xr.Err(), redis.Nil) {
		return false, xr.Err()
	}
	gaps := make(map[int]string)
	for i, p := range parts {
		info, err := infos[i].Result()
		missing := err != nil && strings.Contains(err.Error(), "no such key")
		if err != nil && !missing {
			return false, err
		}
		if gap := rd.check(h, p, ids[i], info, missing); gap != "" {
			gaps[p] = gap
		}
	}
	full := false
	byKey := make(map[string]int, len(parts))
	for i, p := range parts {
		byKey[keys[i]] = p
	}
	for _, st := range xr.Val() {
		p := byKey[st.Stream]
		rd.dispatch(h, p, st.Messages, gaps[p])
		delete(gaps, p)
		full = full || int64(len(st.Messages)) >= watchBatch
	}
	for p, gap := range gaps {
		rd.dispatch(h, p, nil, gap)
	}
	return full, nil
}

// check compares partition p's stream, as XINFO STREAM saw it with the
// read from cursor id, with the reader's cursor, and returns the gap it
// shows, "" when none. It moves the cursor past trimmed entries.
func (rd *reader) check(h *watchHub, p int, id string, info *redis.XInfoStream, missing bool) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := rd.cursors[p]
	if c == nil || c.id != id {
		return "" // the partition's watchers left meanwhile
	}
	switch {
	case missing && (c.id != "0-0" || c.added > 0):
		c.added = 0
		return "the event stream is gone: Redis lost its data, or the stream was deleted"
	case missing:
		return ""
	case info.EntriesAdded > 0 && info.EntriesAdded < c.added:
		c.added = info.EntriesAdded
		return "the event stream was replaced: Redis lost its data, or failed over to a replica that lacked events"
	case cmpID(info.LastGeneratedID, c.id) < 0:
		c.added = info.EntriesAdded
		return "the event stream went back: Redis failed over to a replica that lacked events, or lost its data"
	}
	c.added = info.EntriesAdded
	if info.MaxDeletedEntryID != "" && cmpID(info.MaxDeletedEntryID, c.id) > 0 {
		c.id = info.MaxDeletedEntryID
		return "events not yet read were trimmed from the stream (MAXLEN, or the mirror's trim)"
	}
	return ""
}

// dispatch delivers a gap (when gap is not "") then the entries of
// partition p to its watchers, and moves the cursor past them.
func (rd *reader) dispatch(h *watchHub, p int, msgs []redis.XMessage, gap string) {
	h.mu.Lock()
	ws := slices.Clone(rd.watches[p])
	if c := rd.cursors[p]; c != nil && len(msgs) > 0 {
		c.id = msgs[len(msgs)-1].ID
	}
	h.mu.Unlock()
	if gap != "" {
		for _, w := range ws {
			w.sink.Gap(gap)
		}
	}
	for _, m := range msgs {
		ev, err := eventOf(m)
		for _, w := range ws {
			switch {
			case cmpID(m.ID, w.from[p]) <= 0:
			case err != nil:
				w.sink.Gap(err.Error())
			case w.sink.Matches(ev.Lease.Resource):
				w.sink.Send(ev)
			}
		}
	}
}

// eventOf reads a stream entry written by the scripts.
func eventOf(m redis.XMessage) (coordinator.Event, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	num := func(k string) (int64, error) { return strconv.ParseInt(str(k), 10, 64) }
	bad := func(field string) error {
		return fmt.Errorf("event %s is unreadable: field %q is missing or not a number", m.ID, field)
	}
	r := coordinator.Resource{Type: str("type"), ID: str("id")}
	if r.Validate() != nil || str("event") == "" {
		return coordinator.Event{}, fmt.Errorf("event %s is unreadable: no event, type or id", m.ID)
	}
	var n [5]int64
	for i, f := range []string{"token", "count", "at", "acquired_at", "expires_at"} {
		v, err := num(f)
		if err != nil || v < 0 {
			return coordinator.Event{}, bad(f)
		}
		n[i] = v
	}
	at, exp := time.UnixMilli(n[2]), time.UnixMilli(n[4])
	l := coordinator.Lease{Resource: r, Owner: str("owner"), Token: uint64(n[0]), Count: int(n[1]),
		AcquiredAt: time.UnixMilli(n[3]), ExpiresAt: exp, Meta: str("meta")}
	if str("mode") == "shared" {
		l.Mode = coordinator.ModeShared
		l.Permits, _ = strconv.Atoi(str("cap"))
	}
	kind := coordinator.EventKind(str("event"))
	if l.Count > 0 && exp.After(at) {
		l.Remaining = exp.Sub(at)
	}
	return coordinator.Event{Kind: kind, Lease: l, Time: at, ID: m.ID}, nil
}

// cmpID compares two stream entry ids ("ms-seq") by their numbers.
func cmpID(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	switch {
	case am != bm:
		if am < bm {
			return -1
		}
		return 1
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}
