package pgaudit

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Row is a row of the locks table: a lease as the mirror last saw it.
type Row struct {
	Resource    coordinator.Resource
	Owner       string
	Token       uint64
	Count       int
	AcquiredAt  time.Time
	RenewedAt   time.Time
	ExpiresAt   time.Time
	LastEventID string // stream entry id of the last event applied
	// Mode is the holder's mode; a shared resource has a row per owner.
	Mode    coordinator.Mode
	Permits int    // the cap recorded on a shared resource; 0: none
	Meta    string // the holder's metadata, "" when none
}

const rowColumns = `resource_type, resource_id, owner_id, token, hold_count,
	acquired_at, renewed_at, expires_at, last_event_id, mode, cap, coalesce(meta, '')`

func scanRow(rows pgx.CollectableRow) (Row, error) {
	var r Row
	var token int64
	var count, cp int32
	var mode string
	err := rows.Scan(&r.Resource.Type, &r.Resource.ID, &r.Owner, &token, &count,
		&r.AcquiredAt, &r.RenewedAt, &r.ExpiresAt, &r.LastEventID, &mode, &cp, &r.Meta)
	r.Token, r.Count, r.Permits = uint64(token), int(count), int(cp)
	if mode == "shared" {
		r.Mode = coordinator.ModeShared
	}
	return r, err
}

// cleanupPage is how many expired rows one query of Cleanup reads.
const cleanupPage = 1000

// The expired rows of one page, after the last one of the previous page.
const expiredRowsSQL = `SELECT ` + rowColumns + ` FROM locks
WHERE expires_at < $1 AND (expires_at, resource_type, resource_id, owner_id) > ($2, $3, $4, $6)
ORDER BY expires_at, resource_type, resource_id, owner_id LIMIT $5`

// Moves dead rows to the ledger: each is deleted only if it still carries
// the token found dead and is still expired; each deleted row becomes one
// "expired" ledger row, keyed by its partition and token (tokens are
// unique within a partition), so that expiring a lease twice is a no-op.
const expireRowsSQL = `
WITH d AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $6::text[])
		AS d(resource_type, resource_id, token, partition, owner_id)
), gone AS (
	DELETE FROM locks l USING d
	WHERE l.resource_type = d.resource_type AND l.resource_id = d.resource_id
	  AND l.owner_id = d.owner_id AND l.token = d.token AND l.expires_at < $5
	RETURNING l.resource_type, l.resource_id, l.owner_id, l.token, l.hold_count,
		l.acquired_at, l.renewed_at, l.expires_at, l.last_event_id, l.mode, l.cap, l.meta, d.partition
), ledger AS (
	INSERT INTO lock_events (partition, stream_id, event, resource_type, resource_id, owner_id,
		token, hold_count, at, acquired_at, expires_at, mode, cap, meta)
	SELECT partition, 'expired:' || token, 'expired', resource_type, resource_id, owner_id,
		token, hold_count, $5, acquired_at, expires_at,
		nullif(mode, 'exclusive'), CASE WHEN mode = 'shared' THEN cap END, meta FROM gone
	ON CONFLICT (partition, stream_id) DO NOTHING
)
SELECT ` + rowColumns + ` FROM gone`

// Cleanup moves the stale rows of the locks table to the ledger as
// "expired" events and deletes them, and returns them. A row is stale
// when its expiry has passed by Redis time and its Redis key is gone or
// carries another token: a holder that died without releasing (a lease
// that expires in Redis leaves no event). A row whose lease still lives in
// Redis is never deleted, however late its events are; neither is a row
// the mirror changed since Cleanup looked at Redis.
//
// Run calls Cleanup at start and then periodically; lockctl cleanup calls
// it once.
func (m *Mirror) Cleanup(ctx context.Context) ([]Row, error) {
	if m.err != nil {
		return nil, m.err
	}
	now, err := m.redisNow(ctx)
	if err != nil {
		return nil, err
	}
	var removed []Row
	err = m.eachDeadPage(ctx, now, func(dead []Row) error {
		got, err := m.expire(ctx, now, dead)
		removed = append(removed, got...)
		return err
	})
	if err != nil {
		return removed, err
	}
	m.metrics.expired.Add(float64(len(removed)))
	for _, r := range removed {
		m.cfg.log.Info().Str("resource", r.Resource.String()).Str("owner", r.Owner).Uint64("token", r.Token).
			Time("expires_at", r.ExpiresAt).Msg("pgaudit: stale lease moved to the ledger as expired")
	}
	if len(removed) > 0 {
		m.cfg.log.Info().Int("removed", len(removed)).Msg("pgaudit: cleanup done")
	}
	return removed, nil
}

// redisNow returns Redis's clock, the clock of every lease.
func (m *Mirror) redisNow(ctx context.Context) (time.Time, error) {
	now, err := m.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, redisError("redis time", err)
	}
	return now, nil
}

// eachDeadPage calls f with the rows expired by now whose Redis key is
// gone or carries another token, oldest expiry first, a page (at most
// cleanupPage rows) at a time. f may delete the rows it is given.
func (m *Mirror) eachDeadPage(ctx context.Context, now time.Time, f func([]Row) error) error {
	after := Row{ExpiresAt: time.Unix(0, 0)}
	for {
		// pgx reports a failed Query through the rows
		rows, _ := m.pool.Query(ctx, expiredRowsSQL, now, after.ExpiresAt, after.Resource.Type, after.Resource.ID, cleanupPage, after.Owner)
		page, err := pgx.CollectRows(rows, scanRow)
		if err != nil {
			return pgError("read expired rows", err)
		}
		if len(page) == 0 {
			return nil
		}
		live, err := m.liveTokens(ctx, page, now)
		if err != nil {
			return err
		}
		var dead []Row
		for i, r := range page {
			if !live[i] {
				dead = append(dead, r)
			}
		}
		if len(dead) > 0 {
			if err := f(dead); err != nil {
				return err
			}
		}
		after = page[len(page)-1]
	}
}

// liveTokens reports, for each row, whether its Redis key still carries
// its hold: the owner's token, and an expiry after now (Redis time). An
// exclusive lease is the key's owner and token; a holder of a shared
// resource has fields of its own (token:<owner>, expires_at:<owner>),
// which stay in the hash after it expired until a script next writes it.
// One HMGET per row reads both shapes: a hold may have changed mode since
// its row was written (an upgrade).
func (m *Mirror) liveTokens(ctx context.Context, rows []Row, now time.Time) ([]bool, error) {
	cmds := make([]*redis.SliceCmd, len(rows))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range rows {
			cmds[i] = p.HMGet(ctx, m.layout.LeaseKey(r.Resource), "owner", "token", "expires_at",
				"token:"+r.Owner, "expires_at:"+r.Owner)
		}
		return nil
	})
	live := make([]bool, len(rows))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil {
			return nil, redisError("read lease "+rows[i].Resource.String(), err)
		}
		tok := strconv.FormatUint(rows[i].Token, 10)
		owner, _ := v[0].(string)
		live[i] = owner == rows[i].Owner && v[1] == tok && after(v[2], now) || v[3] == tok && after(v[4], now)
	}
	return live, nil
}

// after reports whether v, an expiry field (Unix ms) of a lease hash, is
// after now.
func after(v any, now time.Time) bool {
	s, _ := v.(string)
	ms, err := strconv.ParseInt(s, 10, 64)
	return err == nil && ms > now.UnixMilli()
}

// expire deletes rows (if unchanged) and records them as expired.
func (m *Mirror) expire(ctx context.Context, now time.Time, rows []Row) ([]Row, error) {
	typs, ids, owners := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
	tokens, parts := make([]int64, len(rows)), make([]int32, len(rows))
	var partitions []int32
	for i, r := range rows {
		typs[i], ids[i], owners[i], tokens[i] = r.Resource.Type, r.Resource.ID, r.Owner, int64(r.Token)
		parts[i] = int32(m.layout.Partition(r.Resource))
		if !slices.Contains(partitions, parts[i]) {
			partitions = append(partitions, parts[i])
		}
	}
	slices.Sort(partitions)
	var removed []Row
	b := &pgx.Batch{}
	for _, p := range partitions {
		b.Queue(partitionLockSQL, m.lockKey, p)
	}
	b.Queue(expireRowsSQL, typs, ids, tokens, parts, now, owners).Query(func(rows pgx.Rows) error {
		var err error
		removed, err = pgx.CollectRows(rows, scanRow)
		return err
	})
	if err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return nil, pgError("expire stale rows", err)
	}
	return removed, nil
}
