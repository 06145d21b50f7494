package pgaudit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Defaults of DiagnoseOptions.
const (
	DefaultHoldBudget   = time.Hour
	DefaultMissingGrace = 10 * time.Second
	DefaultListLimit    = 100
	// lagScanLimit bounds the entries Diagnose reads from one stream to
	// count those not yet delivered, when Redis cannot say (before 7.0).
	lagScanLimit = 100_000
)

// DiagnoseOptions tune Diagnose. The zero value means the defaults.
type DiagnoseOptions struct {
	// HoldBudget: leases held longer than this (since their acquisition,
	// by Redis time) are reported as long held. Zero means
	// DefaultHoldBudget (1 h); a negative value switches the check off.
	HoldBudget time.Duration
	// MissingGrace: a Redis lease acquired less than this before the
	// report is not counted as missing from the mirror, since its event
	// may still be on the way. Zero means DefaultMissingGrace (10 s); a
	// negative value means no grace.
	MissingGrace time.Duration
	// Limit: the most leases each list of the report holds (the counts are
	// exact). Zero means DefaultListLimit (100); negative, no limit.
	Limit int
}

// Report is what Diagnose found. Render it with WriteTable or as JSON,
// and judge it with Healthy, Problems or ExitCode.
type Report struct {
	At         time.Time // Redis time of the report
	Prefix     string
	Partitions int
	Group      string
	HoldBudget time.Duration // 0 when the check is off

	LeasesHeld   int // leases in Redis
	RowsMirrored int // rows of the locks table

	// Stale leases: rows of the locks table expired by Redis time whose
	// Redis key is gone or carries another token (holders that died
	// without releasing), oldest expiry first. Cleanup removes them.
	StaleCount int
	Stale      []Row
	// Leases held in Redis without a row of the same token in the mirror
	// (acquired before the missing grace), oldest first.
	MissingCount int
	Missing      []coordinator.Lease
	// Leases held longer than HoldBudget, longest first.
	LongHeldCount int
	LongHeld      []coordinator.Lease

	Lag Lag // the mirror's backlog in Redis
}

// Lag is the backlog of the mirror's consumer group in the streams.
type Lag struct {
	Entries     int64         // entries in the streams
	Undelivered int64         // entries the group has not read yet
	Pending     int64         // entries read, not yet acknowledged
	Oldest      time.Duration // age of the oldest entry not acknowledged (0: none)
	// the partitions with entries not acknowledged, or without the group
	Partitions []PartitionLag
}

// PartitionLag is the backlog in one partition's stream.
type PartitionLag struct {
	Partition   int
	Entries     int64
	Undelivered int64
	Pending     int64
	Oldest      time.Duration
	NoGroup     bool // the consumer group does not exist on the stream
}

// Diagnose reports on the mirror and the leases: leases held in Redis,
// rows mirrored, stale leases, Redis leases missing from the mirror, the
// mirror's lag (entries in the streams, not delivered, pending, age of
// the oldest not acknowledged) and leases held longer than a budget. It
// reads and changes nothing but reads: SCAN and HMGET of the lease keys,
// XLEN, XINFO GROUPS, XPENDING and XRANGE of the streams, TIME, and the
// locks table.
func (m *Mirror) Diagnose(ctx context.Context, opts DiagnoseOptions) (Report, error) {
	if m.err != nil {
		return Report{}, m.err
	}
	budget := cmp.Or(opts.HoldBudget, DefaultHoldBudget)
	grace := cmp.Or(opts.MissingGrace, DefaultMissingGrace)
	limit := cmp.Or(opts.Limit, DefaultListLimit)
	r := Report{Prefix: m.layout.Prefix(), Partitions: len(m.streams), Group: m.cfg.group, HoldBudget: max(budget, 0)}
	var err error
	if r.At, err = m.redisNow(ctx); err != nil {
		return r, err
	}
	leases, err := m.redisLeases(ctx)
	if err != nil {
		return r, err
	}
	r.LeasesHeld = len(leases)
	rows, _ := m.pool.Query(ctx, `SELECT `+rowColumns+` FROM locks`) // the error comes with the rows
	mirrored, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return r, fmt.Errorf("pgaudit: read locks: %w", err)
	}
	r.RowsMirrored = len(mirrored)
	tokens := make(map[resKey]uint64, len(mirrored))
	for _, row := range mirrored {
		tokens[resKey{row.Resource.Type, row.Resource.ID}] = row.Token
	}

	stale, err := m.deadRows(ctx, r.At)
	if err != nil {
		return r, err
	}
	r.StaleCount, r.Stale = len(stale), head(stale, limit)

	var missing []Row
	for _, l := range leases {
		tok, ok := tokens[resKey{l.Resource.Type, l.Resource.ID}]
		if (!ok || tok != l.Token) && !l.AcquiredAt.After(r.At.Add(-max(grace, 0))) {
			missing = append(missing, Row{Resource: l.Resource, Token: l.Token})
		}
		if budget > 0 && r.At.Sub(l.AcquiredAt) > budget {
			r.LongHeld = append(r.LongHeld, l)
		}
	}
	// a lease released since the scan is not missing
	live, err := m.liveTokens(ctx, missing)
	if err != nil {
		return r, err
	}
	for i, row := range missing {
		if live[i] {
			l := leases[resKey{row.Resource.Type, row.Resource.ID}]
			r.Missing = append(r.Missing, l)
		}
	}
	byAcquired := func(a, b coordinator.Lease) int {
		return cmp.Or(a.AcquiredAt.Compare(b.AcquiredAt), cmp.Compare(a.Resource.String(), b.Resource.String()))
	}
	slices.SortFunc(r.Missing, byAcquired)
	slices.SortFunc(r.LongHeld, byAcquired)
	r.MissingCount, r.Missing = len(r.Missing), head(r.Missing, limit)
	r.LongHeldCount, r.LongHeld = len(r.LongHeld), head(r.LongHeld, limit)

	r.Lag, err = m.lag(ctx, r.At)
	return r, err
}

func head[T any](s []T, n int) []T {
	if n >= 0 && len(s) > n {
		return s[:n]
	}
	return s
}

// redisLeases reads every lease of the store's prefix: SCAN for the lease
// keys (on every master of a Cluster), HMGET of each.
func (m *Mirror) redisLeases(ctx context.Context) (map[resKey]coordinator.Lease, error) {
	match := m.layout.LeaseKeyPattern("")
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			if _, _, err := m.layout.ParseLeaseKey(iter.Val()); err == nil {
				mu.Lock()
				keys = append(keys, iter.Val())
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := m.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, m.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("pgaudit: scan lease keys: %w", err)
	}
	leases := make(map[resKey]coordinator.Lease, len(keys))
	for chunk := range slices.Chunk(keys, 1000) {
		cmds := make([]*redis.SliceCmd, len(chunk))
		_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range chunk {
				cmds[i] = p.HMGet(ctx, k, "owner", "count", "token", "acquired_at", "expires_at")
			}
			return nil
		})
		for i, c := range cmds {
			v, err := c.Result()
			if err != nil {
				return nil, fmt.Errorf("pgaudit: read lease %s: %w", chunk[i], err)
			}
			if v[0] == nil {
				continue // gone since the scan
			}
			res, _, _ := m.layout.ParseLeaseKey(chunk[i])
			l, err := leaseOf(res, v)
			if err != nil {
				return nil, fmt.Errorf("pgaudit: read lease %s: %w", chunk[i], err)
			}
			leases[resKey{res.Type, res.ID}] = l
		}
	}
	return leases, nil
}

// leaseOf reads {owner, count, token, acquired_at, expires_at}.
func leaseOf(r coordinator.Resource, v []any) (coordinator.Lease, error) {
	var nums [4]int64
	for i, field := range []string{"count", "token", "acquired_at", "expires_at"} {
		s, _ := v[i+1].(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return coordinator.Lease{}, fmt.Errorf("field %s = %q: %w", field, s, err)
		}
		nums[i] = n
	}
	owner, _ := v[0].(string)
	return coordinator.Lease{Resource: r, Owner: owner, Count: int(nums[0]), Token: uint64(nums[1]),
		AcquiredAt: msTime(nums[2]), ExpiresAt: msTime(nums[3])}, nil
}

// lag measures the group's backlog in every stream.
func (m *Mirror) lag(ctx context.Context, now time.Time) (Lag, error) {
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
			return Lag{}, fmt.Errorf("pgaudit: length of %s: %w", m.streams[i], err)
		}
		gs, _ := infos[i].Result() // fails only when the stream does not exist
		for j := range gs {
			if gs[j].Name == m.cfg.group {
				groups[i] = &gs[j]
			}
		}
		parts[i].NoGroup = groups[i] == nil
	}
	// the first undelivered entry (and all of them, to count, when Redis
	// does not count), and the lowest pending one
	firsts := make([]*redis.XMessageSliceCmd, n)
	counts := make([]*redis.XMessageSliceCmd, n)
	pend := make([]*redis.XPendingCmd, n)
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range m.streams {
			g := groups[i]
			start := "-"
			if g != nil {
				start = nextID(g.LastDeliveredID)
				if g.Pending > 0 {
					pend[i] = p.XPending(ctx, s, g.Name)
				}
			}
			if g != nil && g.EntriesRead > 0 && g.Lag >= 0 {
				parts[i].Undelivered = g.Lag
			} else {
				counts[i] = p.XRangeN(ctx, s, start, "+", lagScanLimit)
			}
			firsts[i] = p.XRangeN(ctx, s, start, "+", 1)
		}
		return nil
	})
	var lag Lag
	var errs []error
	for i := range parts {
		pl := &parts[i]
		var oldest string
		if firsts[i] != nil {
			msgs, err := firsts[i].Result()
			errs = append(errs, err)
			if len(msgs) > 0 {
				oldest = msgs[0].ID
			}
		}
		if counts[i] != nil {
			msgs, err := counts[i].Result()
			errs = append(errs, err)
			pl.Undelivered = int64(len(msgs))
		}
		if pend[i] != nil {
			x, err := pend[i].Result()
			errs = append(errs, err)
			if err == nil {
				pl.Pending = x.Count
				oldest = lowerID(oldest, x.Lower)
			}
		}
		if oldest != "" {
			ms, _, _ := parseStreamID(oldest)
			pl.Oldest = max(0, now.Sub(msTime(ms)))
		}
		lag.Entries += pl.Entries
		lag.Undelivered += pl.Undelivered
		lag.Pending += pl.Pending
		lag.Oldest = max(lag.Oldest, pl.Oldest)
		if pl.Undelivered > 0 || pl.Pending > 0 || pl.NoGroup {
			lag.Partitions = append(lag.Partitions, *pl)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return lag, fmt.Errorf("pgaudit: measure lag: %w", err)
	}
	return lag, nil
}
