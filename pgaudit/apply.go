package pgaudit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The ledger: one row per entry, replays skipped by the primary key.
const insertEventsSQL = `
INSERT INTO lock_events (partition, stream_id, event, resource_type, resource_id, owner_id,
	token, hold_count, at, acquired_at, expires_at, request_id)
SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::bigint[], $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[])
ON CONFLICT (partition, stream_id) DO NOTHING`

// The mirror, for resources whose latest event of the batch leaves the
// lease held. A row changes only for a later event (token, then stream
// position); a row is not created for a lease the ledger says has ended
// (an event delivered late, after its release: claimed from a dead
// consumer, say).
const upsertLocksSQL = `
INSERT INTO locks AS l (resource_type, resource_id, owner_id, token, hold_count,
	acquired_at, renewed_at, expires_at, last_event_id, last_event_ms, last_event_seq)
SELECT s.* FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[],
	$6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::bigint[], $11::bigint[])
	AS s(resource_type, resource_id, owner_id, token, hold_count,
	acquired_at, renewed_at, expires_at, last_event_id, last_event_ms, last_event_seq)
WHERE NOT EXISTS (
	SELECT 1 FROM lock_events e
	WHERE e.resource_type = s.resource_type AND e.resource_id = s.resource_id
	  AND e.token >= s.token AND e.event IN ('released', 'forced', 'expired'))
ON CONFLICT (resource_type, resource_id) DO UPDATE SET
	owner_id = EXCLUDED.owner_id,
	token = EXCLUDED.token,
	hold_count = EXCLUDED.hold_count,
	acquired_at = EXCLUDED.acquired_at,
	renewed_at = CASE WHEN l.token = EXCLUDED.token
		THEN greatest(l.renewed_at, EXCLUDED.renewed_at) ELSE EXCLUDED.renewed_at END,
	expires_at = EXCLUDED.expires_at,
	last_event_id = EXCLUDED.last_event_id,
	last_event_ms = EXCLUDED.last_event_ms,
	last_event_seq = EXCLUDED.last_event_seq,
	updated_at = now()
WHERE (l.token, l.last_event_ms, l.last_event_seq)
	< (EXCLUDED.token, EXCLUDED.last_event_ms, EXCLUDED.last_event_seq)`

// The mirror, for resources whose latest event of the batch ends the
// lease: the row goes if it is older than that event.
const deleteLocksSQL = `
DELETE FROM locks l
USING unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
	AS d(resource_type, resource_id, token, ms, seq)
WHERE l.resource_type = d.resource_type AND l.resource_id = d.resource_id
  AND (l.token, l.last_event_ms, l.last_event_seq) < (d.token, d.ms, d.seq)`

// Changes of one partition are serialized in Postgres by a transaction
// advisory lock (two-int key space: the prefix's key, the partition), so
// that a late event and the release that follows it cannot pass each other
// in two concurrent transactions.
const partitionLockSQL = `SELECT pg_advisory_xact_lock($1::int, $2::int)`

type resKey struct{ typ, id string }

// applyResult says what a batch did.
type applyResult struct {
	inserted int64 // new ledger rows
}

// apply writes evs to the ledger and the mirror in one transaction.
func (m *Mirror) apply(ctx context.Context, evs []event) (applyResult, error) {
	var res applyResult
	if len(evs) == 0 {
		return res, nil
	}
	n := len(evs)
	var (
		parts                    = make([]int32, n)
		ids, kinds, typs, rids   = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		owners, reqs             = make([]string, n), make([]string, n)
		tokens                   = make([]int64, n)
		counts                   = make([]int32, n)
		ats, acquireds, expireds = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	)
	latest := make(map[resKey]*event, n)
	renewed := make(map[resKey]int64, n)
	var partitions []int32
	for i := range evs {
		e := &evs[i]
		parts[i], ids[i], kinds[i], typs[i], rids[i] = int32(e.partition), e.id, e.kind, e.typ, e.rid
		owners[i], reqs[i], tokens[i], counts[i] = e.owner, e.req, e.token, e.count
		ats[i], acquireds[i], expireds[i] = msTime(e.at), msTime(e.acquired), msTime(e.expires)
		k := resKey{e.typ, e.rid}
		if cur, ok := latest[k]; !ok || e.after(cur) {
			latest[k] = e
		}
		if !slices.Contains(partitions, int32(e.partition)) {
			partitions = append(partitions, int32(e.partition))
		}
	}
	// when the batch renewed the final lease, the last renewal time
	for i := range evs {
		e := &evs[i]
		k := resKey{e.typ, e.rid}
		if e.token == latest[k].token && (e.kind == EventAcquired || e.kind == EventReentered || e.kind == EventRenewed) {
			renewed[k] = max(renewed[k], e.at)
		}
	}

	var up struct {
		typs, rids, owners, lastIDs []string
		tokens, lastMS, lastSeq     []int64
		counts                      []int32
		acq, ren, exp               []time.Time
	}
	var del struct {
		typs, rids      []string
		tokens, ms, seq []int64
	}
	for k, e := range latest {
		if terminal(e.kind) {
			del.typs, del.rids = append(del.typs, k.typ), append(del.rids, k.id)
			del.tokens, del.ms, del.seq = append(del.tokens, e.token), append(del.ms, e.ms), append(del.seq, e.seq)
			continue
		}
		ren, ok := renewed[k]
		if !ok {
			ren = e.acquired
		}
		up.typs, up.rids, up.owners, up.lastIDs = append(up.typs, k.typ), append(up.rids, k.id), append(up.owners, e.owner), append(up.lastIDs, e.id)
		up.tokens, up.lastMS, up.lastSeq = append(up.tokens, e.token), append(up.lastMS, e.ms), append(up.lastSeq, e.seq)
		up.counts = append(up.counts, e.count)
		up.acq, up.ren, up.exp = append(up.acq, msTime(e.acquired)), append(up.ren, msTime(ren)), append(up.exp, msTime(e.expires))
	}
	slices.Sort(partitions)

	b := &pgx.Batch{}
	for _, p := range partitions {
		b.Queue(partitionLockSQL, m.lockKey, p)
	}
	b.Queue(insertEventsSQL, parts, ids, kinds, typs, rids, owners, tokens, counts, ats, acquireds, expireds, reqs).
		Exec(func(tag pgconn.CommandTag) error {
			res.inserted = tag.RowsAffected()
			return nil
		})
	if len(up.typs) > 0 {
		b.Queue(upsertLocksSQL, up.typs, up.rids, up.owners, up.tokens, up.counts,
			up.acq, up.ren, up.exp, up.lastIDs, up.lastMS, up.lastSeq)
	}
	if len(del.typs) > 0 {
		b.Queue(deleteLocksSQL, del.typs, del.rids, del.tokens, del.ms, del.seq)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.applyTimeout)
	defer cancel()
	if err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return res, fmt.Errorf("pgaudit: apply batch: %w", err)
	}
	return res, nil
}
