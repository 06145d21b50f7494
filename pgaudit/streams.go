package pgaudit

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// batch is what one read or claim returned: the events to apply, the
// entries to keep as dead letters (malformed, or deleted before they were
// read), and every entry id to acknowledge once both are in Postgres.
type batch struct {
	events []event
	dead   []deadLetter
	acks   map[int][]string // partition -> entry ids
	n      int              // entries
	oldest uint64           // ms of the oldest entry id; 0 when none
}

func (m *Mirror) newBatch() *batch { return &batch{acks: map[int][]string{}} }

// add parses the entries read from partition p into b.
func (m *Mirror) add(b *batch, p int, msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	b.acks[p] = slices.Grow(b.acks[p], len(msgs))
	for _, msg := range msgs {
		b.acks[p] = append(b.acks[p], msg.ID)
		b.n++
		if len(msg.Values) == 0 {
			// a pending entry deleted from the stream (MAXLEN cap) before
			// it was applied: the event is gone
			m.lost(b, p, msg.ID)
			continue
		}
		e, err := parseEvent(p, msg)
		if err != nil {
			m.metrics.malformed.Inc()
			m.cfg.log.Error().Err(err).Int("partition", p).Str("entry", msg.ID).Interface("fields", msg.Values).
				Msg("pgaudit: a stream entry is not a lease event; keeping it as a dead letter")
			b.dead = append(b.dead, deadLetter{partition: p, id: msg.ID, fields: fieldsOf(msg.Values),
				reason: reasonMalformed + err.Error()})
			continue
		}
		if b.oldest == 0 || e.ms < b.oldest {
			b.oldest = e.ms
		}
		b.events = append(b.events, e)
	}
}

// lost records in b a pending entry that was deleted from its stream
// before it was applied.
func (m *Mirror) lost(b *batch, p int, id string) {
	m.metrics.lost.Inc()
	m.cfg.log.Error().Int("partition", p).Str("entry", id).
		Msg("pgaudit: pending entry was trimmed from the stream before it was mirrored; its event is lost")
	b.dead = append(b.dead, deadLetter{partition: p, id: id, reason: reasonLost})
}

// ensureGroups creates the consumer group on every partition stream (and
// the stream, if missing), starting at the first entry.
func (m *Mirror) ensureGroups(ctx context.Context) error {
	cmds := make([]*redis.StatusCmd, len(m.streams))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range m.streams {
			cmds[i] = p.XGroupCreateMkStream(ctx, s, m.cfg.group, "0")
		}
		return nil
	})
	for i, c := range cmds {
		if err := c.Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return redisError("create consumer group "+m.cfg.group+" on "+m.streams[i], err)
		}
	}
	return nil
}

// read reads entries after id (">" for new entries, "0" for the
// consumer's own pending ones) from every partition, waiting up to block
// (0: not at all) when there are none.
func (m *Mirror) read(ctx context.Context, id string, block time.Duration) (*batch, error) {
	b := m.newBatch()
	if m.cfg.perPartition {
		// Cluster: the streams live in different slots, one command each
		cmds := make([]*redis.XStreamSliceCmd, len(m.streams))
		_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range m.streams {
				cmds[i] = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: m.cfg.group, Consumer: m.cfg.consumer,
					Streams: []string{s, id}, Count: int64(m.cfg.batchSize), Block: -1})
			}
			return nil
		})
		total := 0
		for i, c := range cmds {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, redisError("read "+m.streams[i], err)
			}
			total += entries(c.Val())
		}
		b.events = make([]event, 0, total)
		for i, c := range cmds {
			for _, st := range c.Val() {
				m.add(b, i, st.Messages)
			}
		}
		if b.n == 0 && block > 0 {
			sleep(ctx, min(block, 100*time.Millisecond))
		}
		return b, nil
	}
	streams := make([]string, 0, 2*len(m.streams))
	streams = append(streams, m.streams...)
	for range m.streams {
		streams = append(streams, id)
	}
	if block <= 0 {
		block = -1
	}
	res, err := m.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: m.cfg.group, Consumer: m.cfg.consumer,
		Streams: streams, Count: int64(m.cfg.batchSize), Block: block}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisError("read streams", err)
	}
	b.events = make([]event, 0, entries(res))
	for _, st := range res {
		m.add(b, m.partOf[st.Stream], st.Messages)
	}
	return b, nil
}

func entries(res []redis.XStream) int {
	n := 0
	for _, st := range res {
		n += len(st.Messages)
	}
	return n
}

// claim takes over, from start on, the entries of partition p pending
// with other consumers for longer than the claim idle time. It returns the
// cursor of the next call ("0-0" at the end).
func (m *Mirror) claim(ctx context.Context, p int, start string) (*batch, string, error) {
	msgs, next, deleted, err := m.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
		Stream: m.streams[p], Group: m.cfg.group, Consumer: m.cfg.consumer,
		MinIdle: m.cfg.claimIdle, Start: start, Count: int64(m.cfg.batchSize)}).Result()
	if err != nil {
		return nil, "", redisError("claim pending entries of "+m.streams[p], err)
	}
	b := m.newBatch()
	m.add(b, p, msgs)
	if len(msgs) > 0 {
		m.metrics.claimed.Add(float64(len(msgs)))
		m.cfg.log.Info().Int("partition", p).Int("entries", len(msgs)).Msg("pgaudit: claimed entries of an idle consumer")
	}
	for _, id := range deleted {
		// Redis dropped it from the pending list itself
		b.n++
		m.lost(b, p, id)
	}
	return b, next, nil
}

// ack acknowledges every entry of b.
func (m *Mirror) ack(ctx context.Context, b *batch) error {
	_, err := m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for part, ids := range b.acks {
			p.XAck(ctx, m.streams[part], m.cfg.group, ids...)
		}
		return nil
	})
	if err != nil {
		return redisError("acknowledge", err)
	}
	return nil
}

// trim deletes from every stream the entries that every consumer group
// has acknowledged: those before the lowest id a group still has pending
// or has not been delivered yet. A stream without groups is left alone.
func (m *Mirror) trim(ctx context.Context) (int64, error) {
	floors, err := m.trimFloors(ctx)
	if err != nil {
		return 0, err
	}
	trims := make([]*redis.IntCmd, len(m.streams))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, floor := range floors {
			if floor != "" {
				trims[i] = p.XTrimMinID(ctx, m.streams[i], floor)
			}
		}
		return nil
	})
	var total int64
	var errs []error
	for i, c := range trims {
		if c == nil {
			continue
		}
		n, err := c.Result()
		if err != nil {
			errs = append(errs, redisError("trim "+m.streams[i], err))
		}
		total += n
	}
	m.metrics.trimmed.Add(float64(total))
	return total, errors.Join(errs...)
}

// trimFloors returns, per stream, the lowest id a consumer group still
// needs ("" for a stream without groups): XINFO GROUPS of every stream,
// then the XPENDING summary of each group with entries pending.
func (m *Mirror) trimFloors(ctx context.Context) ([]string, error) {
	infos := make([]*redis.XInfoGroupsCmd, len(m.streams))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range m.streams {
			infos[i] = p.XInfoGroups(ctx, s)
		}
		return nil
	})
	type pendingOf struct {
		part int
		cmd  *redis.XPendingCmd
	}
	var pend []pendingOf
	floors := make([]string, len(m.streams))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range infos {
			groups, err := c.Result()
			if err != nil {
				continue // no stream: nothing to trim
			}
			for _, g := range groups {
				if g.Pending > 0 {
					pend = append(pend, pendingOf{i, p.XPending(ctx, m.streams[i], g.Name)})
					continue
				}
				floors[i] = lowerID(floors[i], nextID(g.LastDeliveredID))
			}
		}
		return nil
	})
	for _, pc := range pend {
		x, err := pc.cmd.Result()
		if err != nil {
			return nil, redisError("trim "+m.streams[pc.part], err)
		}
		floors[pc.part] = lowerID(floors[pc.part], x.Lower)
	}
	return floors, nil
}

// nextID returns the stream id right after id (id itself when it is the
// largest id, after which a stream holds nothing).
func nextID(id string) string {
	ms, seq, err := parseStreamID(id)
	switch {
	case err != nil:
		return id
	case seq < math.MaxUint64:
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
	case ms < math.MaxUint64:
		return strconv.FormatUint(ms+1, 10) + "-0"
	}
	return id
}

// lowerID returns the lower of two stream ids, "" standing for none.
func lowerID(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	if streamIDLess(b, a) {
		return b
	}
	return a
}

func streamIDLess(a, b string) bool {
	am, as, _ := parseStreamID(a)
	bm, bs, _ := parseStreamID(b)
	if am != bm {
		return am < bm
	}
	return as < bs
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
