package pgaudit

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// lag measures the group's backlog in every stream: XLEN and XINFO GROUPS
// of all streams (one pipeline), then per stream the XPENDING summary, the
// first entry not yet delivered (XRANGE COUNT 1) and, only when Redis
// cannot say how many the group has not read (before 7.0, or after
// deletions), a count in pages of rangePage entries. Every command is
// short, whatever the length of the streams.
func (m *Mirror) lag(ctx context.Context, now time.Time) (Lag, error) {
	parts, groups, err := m.streamInfo(ctx)
	if err != nil {
		return Lag{}, err
	}
	var lag Lag
	for i := range parts {
		pl := &parts[i]
		if err := m.partitionLag(ctx, pl, groups[i], now); err != nil {
			return lag, err
		}
		lag.Entries += pl.Entries
		lag.Undelivered += pl.Undelivered
		lag.Pending += pl.Pending
		lag.Oldest = max(lag.Oldest, pl.Oldest)
		if pl.Undelivered > 0 || pl.Pending > 0 || pl.NoGroup {
			lag.Partitions = append(lag.Partitions, *pl)
		}
	}
	return lag, nil
}

// streamInfo reads the length of every stream and the mirror's group on
// it (nil when the group or the stream does not exist).
func (m *Mirror) streamInfo(ctx context.Context) ([]PartitionLag, []*redis.XInfoGroup, error) {
	n := len(m.streams)
	lens := make([]*redis.IntCmd, n)
	infos := make([]*redis.XInfoGroupsCmd, n)
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range m.streams {
			lens[i] = p.XLen(ctx, s)
			infos[i] = p.XInfoGroups(ctx, s)
		}
		return nil
	})
	parts := make([]PartitionLag, n)
	groups := make([]*redis.XInfoGroup, n)
	for i := range m.streams {
		parts[i].Partition = i
		var err error
		if parts[i].Entries, err = lens[i].Result(); err != nil {
			return nil, nil, redisError("length of "+m.streams[i], err)
		}
		gs, _ := infos[i].Result() // fails only when the stream does not exist
		for j := range gs {
			if gs[j].Name == m.cfg.group {
				groups[i] = &gs[j]
			}
		}
		parts[i].NoGroup = groups[i] == nil
	}
	return parts, groups, nil
}

// partitionLag fills pl: the entries pending and not yet delivered, and
// the age (Redis time) of the oldest entry not acknowledged.
func (m *Mirror) partitionLag(ctx context.Context, pl *PartitionLag, g *redis.XInfoGroup, now time.Time) error {
	stream := m.streams[pl.Partition]
	var oldest string
	start := "-"
	if g != nil {
		start = nextID(g.LastDeliveredID)
		if g.Pending > 0 {
			x, err := m.rdb.XPending(ctx, stream, g.Name).Result()
			if err != nil {
				return redisError("measure lag: pending entries of "+stream, err)
			}
			pl.Pending, oldest = x.Count, x.Lower
		}
	}
	first, err := m.rdb.XRangeN(ctx, stream, start, "+", 1).Result()
	if err != nil {
		return redisError("measure lag: first undelivered entry of "+stream, err)
	}
	if len(first) > 0 {
		oldest = lowerID(oldest, first[0].ID)
	}
	if pl.Undelivered, err = m.undelivered(ctx, stream, g, pl.Entries, start); err != nil {
		return err
	}
	if ms, _, err := parseStreamID(oldest); err == nil {
		if t, ok := streamTime(ms); ok {
			pl.Oldest = max(0, now.Sub(t))
		}
	}
	return nil
}

// undelivered returns how many entries of stream the group g has not read
// (entries: the stream's length; start: the first id not delivered).
func (m *Mirror) undelivered(ctx context.Context, stream string, g *redis.XInfoGroup, entries int64, start string) (int64, error) {
	switch {
	case g == nil, g.LastDeliveredID == "0-0":
		return entries, nil // the group has read none of them (or would)
	case g.EntriesRead > 0 && g.Lag >= 0:
		return g.Lag, nil // Redis 7 counts them
	}
	var n int64
	for {
		page, err := m.rdb.XRangeN(ctx, stream, start, "+", rangePage).Result()
		if err != nil {
			return n, redisError("measure lag: count undelivered entries of "+stream, err)
		}
		n += int64(len(page))
		if len(page) < rangePage {
			return n, nil
		}
		last := page[len(page)-1].ID
		if start = nextID(last); start == last {
			return n, nil // the largest id: nothing can follow
		}
	}
}
