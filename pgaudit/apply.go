package pgaudit

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The ledger: one row per entry, replays skipped by the primary key.
const insertEventsSQL = `
INSERT INTO lock_events (partition, stream_id, event, resource_type, resource_id, owner_id,
	token, hold_count, at, acquired_at, expires_at, request_id, forced_by, mode, cap, meta)
SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::bigint[], $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[],
	$14::text[], $15::int[], $16::text[])
ON CONFLICT (partition, stream_id) DO NOTHING`

// The mirror, for holds whose latest event of the batch leaves them
// held: one row per (resource, owner), as several owners hold a shared
// resource. A row changes only for a later event (token, then stream
// position); a row is not created for a hold the ledger says has ended
// (an event delivered late, after its release: claimed from a dead
// consumer, say).
//
// The "has ended" check is a scalar subquery, which Postgres never turns
// into a join: it runs once per row, as an index scan of
// lock_events_ended_idx (or of lock_events_resource_idx). Written as NOT
// EXISTS, the planner was free to plan an anti join, and with statistics
// taken before the ledger held any release it estimated one ended row and
// chose a nested loop over a sequential scan of the whole ledger: one scan
// per row of the batch, which exceeded the apply timeout for good.
const upsertLocksSQL = `
INSERT INTO locks AS l (resource_type, resource_id, owner_id, token, hold_count,
	acquired_at, renewed_at, expires_at, last_event_id, last_event_ms, last_event_seq, mode, cap, meta)
SELECT s.* FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[],
	$6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::bigint[], $11::bigint[],
	$12::text[], $13::int[], $14::text[])
	AS s(resource_type, resource_id, owner_id, token, hold_count,
	acquired_at, renewed_at, expires_at, last_event_id, last_event_ms, last_event_seq, mode, cap, meta)
WHERE (SELECT true FROM lock_events e
	WHERE e.resource_type = s.resource_type AND e.resource_id = s.resource_id
	  AND e.token >= s.token AND e.event IN ('released', 'forced', 'expired')
	  AND e.owner_id = s.owner_id
	LIMIT 1) IS NULL
ON CONFLICT (resource_type, resource_id, owner_id) DO UPDATE SET
	token = EXCLUDED.token,
	hold_count = EXCLUDED.hold_count,
	acquired_at = EXCLUDED.acquired_at,
	renewed_at = CASE WHEN l.token = EXCLUDED.token
		THEN greatest(l.renewed_at, EXCLUDED.renewed_at) ELSE EXCLUDED.renewed_at END,
	expires_at = EXCLUDED.expires_at,
	last_event_id = EXCLUDED.last_event_id,
	last_event_ms = EXCLUDED.last_event_ms,
	last_event_seq = EXCLUDED.last_event_seq,
	mode = EXCLUDED.mode,
	cap = EXCLUDED.cap,
	meta = EXCLUDED.meta,
	updated_at = now()
WHERE (l.token, l.last_event_ms, l.last_event_seq)
	< (EXCLUDED.token, EXCLUDED.last_event_ms, EXCLUDED.last_event_seq)`

// The mirror, for exclusive holds of the batch: the rows of other owners
// of the resource with an older token are gone (an exclusive hold's token
// is above every token issued before for the resource: their holds ended,
// by an expiry when no event says so), as the one row per resource of an
// exclusive lease was replaced before shared leases.
const supersedeLocksSQL = `
DELETE FROM locks l
USING unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(resource_type, resource_id, owner_id, token)
WHERE l.resource_type = x.resource_type AND l.resource_id = x.resource_id
  AND l.owner_id <> x.owner_id AND l.token < x.token`

// The mirror, for holds whose latest event of the batch ends them: the
// row goes if it is older than that event.
const deleteLocksSQL = `
DELETE FROM locks l
USING unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
	AS d(resource_type, resource_id, owner_id, token, ms, seq)
WHERE l.resource_type = d.resource_type AND l.resource_id = d.resource_id AND l.owner_id = d.owner_id
  AND (l.token, l.last_event_ms, l.last_event_seq) < (d.token, d.ms, d.seq)`

// Changes of one partition are serialized in Postgres by a transaction
// advisory lock (two-int key space: the prefix's key, the partition), so
// that a late event and the release that follows it cannot pass each other
// in two concurrent transactions.
const partitionLockSQL = `SELECT pg_advisory_xact_lock($1::int, $2::int)`

// ledgerColumns are the columns the mirror writes to lock_events.
var ledgerColumns = []string{"partition", "stream_id", "event", "resource_type", "resource_id", "owner_id",
	"token", "hold_count", "at", "acquired_at", "expires_at", "request_id", "forced_by", "mode", "cap", "meta"}

// uniqueViolation is Postgres's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// Dead letters replayed by ReplayDeadLetters.
const resolveDeadLettersSQL = `
UPDATE lock_dead_letters SET resolved_at = now(), resolution = 'replayed'
WHERE (partition, stream_id) IN (SELECT * FROM unnest($1::int[], $2::text[]))`

// holdKey names one owner's hold of a resource: a row of the mirror.
type holdKey struct{ typ, id, owner string }

// deadKey names a dead letter.
type deadKey struct {
	partition int
	id        string
}

// work is what one transaction writes: events to the ledger and the
// mirror, entries to the dead-letter table, dead letters to resolve.
type work struct {
	events  []event
	dead    []deadLetter
	resolve []deadKey
}

// applyResult says what a transaction, or several, did.
type applyResult struct {
	inserted int64        // new ledger rows
	applied  int          // events applied (new or already in the ledger)
	dead     []deadLetter // entries recorded as dead letters
}

func (r applyResult) plus(o applyResult) applyResult {
	return applyResult{r.inserted + o.inserted, r.applied + o.applied, append(slices.Clip(r.dead), o.dead...)}
}

// applyIsolating applies w. When Postgres refuses the data of the batch
// (see refusedData) it applies each half on its own, down to the single
// entries it refuses; those become dead letters, with Postgres's message
// as the reason, and the rest is applied. A batch with k refused entries
// among n costs about 2k·log2(n) transactions more.
func (m *Mirror) applyIsolating(ctx context.Context, w work) (applyResult, error) {
	res, err := m.apply(ctx, w)
	if err == nil || !refusedData(err) || len(w.events) == 0 {
		return res, err
	}
	if len(w.events) == 1 {
		e := &w.events[0]
		m.cfg.log.Error().Err(err).Int("partition", e.partition).Str("entry", e.id).
			Msg("pgaudit: Postgres refused a stream entry; keeping it as a dead letter")
		d := []deadLetter{{partition: e.partition, id: e.id, fields: e.fields(), reason: reasonRefused + pgMessage(err)}}
		if err := m.readRaw(ctx, d); err != nil {
			return res, err
		}
		return m.apply(ctx, work{dead: append(slices.Clip(w.dead), d...)})
	}
	h := len(w.events) / 2
	first, err := m.applyIsolating(ctx, work{events: w.events[:h], dead: w.dead})
	if err != nil {
		return first, err
	}
	second, err := m.applyIsolating(ctx, work{events: w.events[h:]})
	return first.plus(second), err
}

// apply writes w in one transaction. The ledger rows go by COPY, the fast
// path; when an entry is in the ledger already (a replay after a crash, or
// a claim race with another mirror) COPY fails on the key and the batch is
// applied again with an INSERT that skips the rows present.
func (m *Mirror) apply(ctx context.Context, w work) (applyResult, error) {
	res, err := m.applyWith(ctx, w, true)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == uniqueViolation {
		return m.applyWith(ctx, w, false)
	}
	return res, err
}

func (m *Mirror) applyWith(ctx context.Context, w work, copyLedger bool) (applyResult, error) {
	res := applyResult{applied: len(w.events), dead: w.dead}
	if len(w.events) == 0 && len(w.dead) == 0 {
		return res, nil
	}
	locks := &pgx.Batch{}
	for _, p := range partitionsOf(w.events) {
		locks.Queue(partitionLockSQL, m.lockKey, p)
	}
	b := &pgx.Batch{}
	if len(w.dead) > 0 {
		b.Queue(insertDeadLettersSQL, m.deadLetterArrays(w.dead)...)
	}
	if len(w.resolve) > 0 {
		parts, ids := make([]int32, len(w.resolve)), make([]string, len(w.resolve))
		for i, k := range w.resolve {
			parts[i], ids[i] = int32(k.partition), k.id
		}
		b.Queue(resolveDeadLettersSQL, parts, ids)
	}
	if !copyLedger && len(w.events) > 0 {
		b.Queue(insertEventsSQL, ledgerArrays(w.events)...).Exec(func(tag pgconn.CommandTag) error {
			res.inserted = tag.RowsAffected()
			return nil
		})
	}
	up, sup, del := reduce(w.events)
	if len(up[0].([]string)) > 0 {
		b.Queue(upsertLocksSQL, up...)
	}
	if len(sup[0].([]string)) > 0 {
		b.Queue(supersedeLocksSQL, sup...)
	}
	if len(del[0].([]string)) > 0 {
		b.Queue(deleteLocksSQL, del...)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.applyTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, locks).Close(); err != nil {
			return err
		}
		if copyLedger && len(w.events) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"lock_events"}, ledgerColumns, &ledgerRows{evs: w.events, i: -1})
			if err != nil {
				return err
			}
			res.inserted = n
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return res, pgError("apply batch", err)
	}
	return res, nil
}

// partitionsOf returns the partitions of evs, in ascending order: the
// order their advisory locks are taken in, so that two transactions never
// wait for each other in a cycle.
func partitionsOf(evs []event) []int32 {
	var ps []int32
	for i := range evs {
		if p := int32(evs[i].partition); !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// ledgerRows feeds evs to COPY, one reused row at a time.
type ledgerRows struct {
	evs []event
	i   int
	row [16]any
}

func (r *ledgerRows) Next() bool { r.i++; return r.i < len(r.evs) }
func (r *ledgerRows) Err() error { return nil }
func (r *ledgerRows) Values() ([]any, error) {
	e := &r.evs[r.i]
	mode, cp := e.ledgerMode()
	r.row = [16]any{int32(e.partition), e.ledgerID(), e.kind, e.typ, e.rid, e.owner, e.token, e.count,
		msTime(e.at), msTime(e.acquired), msTime(e.expires), e.req, e.by, mode, cp, e.meta}
	return r.row[:], nil
}

// ledgerArrays returns the arguments of insertEventsSQL: one array per
// column.
func ledgerArrays(evs []event) []any {
	n := len(evs)
	parts, counts := make([]int32, n), make([]int32, n)
	ids, kinds, typs, rids, owners, reqs := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	tokens := make([]int64, n)
	ats, acquireds, expireds := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	bys, modes, metas := make([]*string, n), make([]*string, n), make([]*string, n)
	caps := make([]*int32, n)
	for i := range evs {
		e := &evs[i]
		parts[i], ids[i], kinds[i], typs[i], rids[i] = int32(e.partition), e.ledgerID(), e.kind, e.typ, e.rid
		owners[i], reqs[i], tokens[i], counts[i] = e.owner, e.req, e.token, e.count
		ats[i], acquireds[i], expireds[i] = msTime(e.at), msTime(e.acquired), msTime(e.expires)
		bys[i], metas[i] = e.by, e.meta
		modes[i], caps[i] = e.ledgerMode()
	}
	return []any{parts, ids, kinds, typs, rids, owners, tokens, counts, ats, acquireds, expireds, reqs, bys, modes, caps, metas}
}

// reduce keeps, per hold (resource and owner), the latest event of evs
// (by token, then stream position) and returns the arguments of
// upsertLocksSQL (holds whose latest event leaves them held), of
// supersedeLocksSQL (those of them that are exclusive) and of
// deleteLocksSQL (those whose latest event ends them).
func reduce(evs []event) (up, sup, del []any) {
	latest := make(map[holdKey]*event, len(evs))
	for i := range evs {
		e := &evs[i]
		k := holdKey{e.typ, e.rid, e.owner}
		if cur, ok := latest[k]; !ok || e.after(cur) {
			latest[k] = e
		}
	}
	// when the batch renewed the final lease, the last renewal time
	renewed := make(map[holdKey]int64, len(latest))
	for i := range evs {
		e := &evs[i]
		k := holdKey{e.typ, e.rid, e.owner}
		if e.token == latest[k].token && (e.kind == EventAcquired || e.kind == EventReentered || e.kind == EventRenewed) {
			renewed[k] = max(renewed[k], e.at)
		}
	}
	var u upserts
	var s, d holdArrays
	for k, e := range latest {
		ms, seq := e.dbPosition()
		if terminal(e.kind) {
			d.add(k, e.token, ms, seq)
			continue
		}
		ren, ok := renewed[k]
		if !ok {
			ren = e.acquired
		}
		u.add(k, e, ren, ms, seq)
		if !e.shared {
			s.add(k, e.token, ms, seq)
		}
	}
	return u.args(), s.args()[:4], d.args()
}

// holdArrays are the arrays of holds, tokens and stream positions.
type holdArrays struct {
	typs, ids, owners []string
	tokens, mss, seqs []int64
}

func (a *holdArrays) add(k holdKey, token, ms, seq int64) {
	a.typs, a.ids, a.owners = append(a.typs, k.typ), append(a.ids, k.id), append(a.owners, k.owner)
	a.tokens, a.mss, a.seqs = append(a.tokens, token), append(a.mss, ms), append(a.seqs, seq)
}

func (a *holdArrays) args() []any {
	return []any{a.typs, a.ids, a.owners, a.tokens, a.mss, a.seqs}
}

// upserts are the arguments of upsertLocksSQL.
type upserts struct {
	holdArrays
	last, modes   []string
	counts, caps  []int32
	acq, ren, exp []time.Time
	metas         []*string
}

func (u *upserts) add(k holdKey, e *event, ren, ms, seq int64) {
	u.holdArrays.add(k, e.token, ms, seq)
	u.last, u.modes, u.metas = append(u.last, e.id), append(u.modes, e.modeText()), append(u.metas, e.meta)
	u.counts, u.caps = append(u.counts, e.count), append(u.caps, e.cap)
	u.acq, u.ren, u.exp = append(u.acq, msTime(e.acquired)), append(u.ren, msTime(ren)), append(u.exp, msTime(e.expires))
}

func (u *upserts) args() []any {
	return []any{u.typs, u.ids, u.owners, u.tokens, u.counts, u.acq, u.ren, u.exp, u.last, u.mss, u.seqs,
		u.modes, u.caps, u.metas}
}
