package pgaudit

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// DeadLetter is a stream entry the mirror could not apply, kept whole in
// the lock_dead_letters table instead: an entry that is not a lease event
// (malformed), one Postgres refused (text that is not UTF-8, a value out
// of range, an id too long for an index), or one deleted from its stream
// before the mirror applied it (lost). The mirror acknowledges an entry
// only once it is in the ledger or here.
type DeadLetter struct {
	Partition  int
	StreamID   string // the entry's id in its stream
	StreamKey  string // the stream's Redis key
	Group      string // the consumer group that read it
	Fields     []Field
	Reason     string
	RecordedAt time.Time
	ResolvedAt time.Time // zero while the dead letter is open
	Resolution string    // "replayed", or what the operator wrote
}

// Field is a field of a stream entry, byte for byte as Redis holds it (a
// Go string may hold bytes that are not UTF-8).
type Field struct{ Name, Value string }

// deadLetter is a dead letter on its way to the table.
type deadLetter struct {
	partition int
	id        string
	fields    []Field
	reason    string
}

// Reasons of dead letters, the start of the reason column.
const (
	reasonMalformed = "malformed: "
	reasonRefused   = "refused by Postgres: "
	reasonLost      = "lost: the entry was deleted from the stream (its MAXLEN cap) before it was mirrored"
)

// insertDeadLettersSQL keeps the first record of an entry: a replay of the
// batch is a no-op.
const insertDeadLettersSQL = `
INSERT INTO lock_dead_letters (partition, stream_id, stream_key, consumer_group, fields, reason)
SELECT d.partition, d.stream_id, d.stream_key, d.consumer_group, d.fields::jsonb, d.reason
FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
	AS d(partition, stream_id, stream_key, consumer_group, fields, reason)
ON CONFLICT (partition, stream_id) DO NOTHING`

// deadLetterArrays returns the arguments of insertDeadLettersSQL.
func (m *Mirror) deadLetterArrays(dead []deadLetter) []any {
	n := len(dead)
	parts := make([]int32, n)
	ids, keys, groups, fields, reasons := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n)
	for i, d := range dead {
		parts[i], ids[i], keys[i], groups[i] = int32(d.partition), d.id, m.streams[d.partition], m.cfg.group
		fields[i], reasons[i] = encodeFields(d.fields), safeText(d.reason)
	}
	return []any{parts, ids, keys, groups, fields, reasons}
}

// encodeFields writes fields as the JSON array of the fields column:
// [[name, value], ...] in the entry's order, each a JSON string when it is
// text Postgres can hold (UTF-8 without NUL), else {"hex": "<bytes>"}.
func encodeFields(fields []Field) string {
	pairs := make([][2]any, 0, len(fields))
	for _, f := range fields {
		pairs = append(pairs, [2]any{jsonField(f.Name), jsonField(f.Value)})
	}
	b, _ := json.Marshal(pairs) // strings and maps of strings always encode
	return string(b)
}

func jsonField(s string) any {
	if isText(s) {
		return s
	}
	return map[string]string{"hex": hex.EncodeToString([]byte(s))}
}

// isText reports whether Postgres takes s as text.
func isText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// safeText returns s as text Postgres takes, escaping what it would not.
func safeText(s string) string {
	if isText(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
}

// decodeFields reads the fields column back.
func decodeFields(raw []byte) ([]Field, error) {
	var pairs [][2]json.RawMessage
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("fields: want [[name, value], ...]: %w", err)
	}
	out := make([]Field, 0, len(pairs))
	for _, p := range pairs {
		name, err := decodeField(p[0])
		if err != nil {
			return nil, err
		}
		value, err := decodeField(p[1])
		if err != nil {
			return nil, err
		}
		out = append(out, Field{name, value})
	}
	return out, nil
}

func decodeField(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var h struct {
		Hex *string `json:"hex"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Hex == nil {
		return "", fmt.Errorf("fields: %s: want a string or {\"hex\": ...}", raw)
	}
	b, err := hex.DecodeString(*h.Hex)
	if err != nil {
		return "", fmt.Errorf("fields: %s: %w", raw, err)
	}
	return string(b), nil
}

// fieldsOf returns the fields of a message as go-redis parsed them (by
// name), for an entry whose raw form cannot be read again.
func fieldsOf(values map[string]any) []Field {
	out := make([]Field, 0, len(values))
	for _, k := range slices.Sorted(maps.Keys(values)) {
		v, _ := values[k].(string)
		out = append(out, Field{k, v})
	}
	return out
}

// fields returns e's fields as the scripts write them.
func (e *event) fields() []Field {
	num := func(n int64) string { return fmt.Sprint(n) }
	f := []Field{{"event", e.kind}, {"type", e.typ}, {"id", e.rid}, {"owner", e.owner},
		{"token", num(e.token)}, {"count", num(int64(e.count))}, {"at", num(e.at)},
		{"acquired_at", num(e.acquired)}, {"expires_at", num(e.expires)}, {"req", e.req}}
	if e.meta != nil {
		f = append(f, Field{"meta", *e.meta})
	}
	if e.shared {
		f = append(f, Field{"mode", "shared"}, Field{"cap", num(int64(e.cap))})
	}
	return f
}

// readRaw reads the dead letters' entries again, in their raw form (field
// order and repeated names, which the parsed form loses). An entry gone
// from its stream keeps the fields it has.
func (m *Mirror) readRaw(ctx context.Context, dead []deadLetter) error {
	if len(dead) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(dead))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range dead {
			cmds[i] = p.Do(ctx, "XRANGE", m.streams[d.partition], d.id, d.id)
		}
		return nil
	})
	for i, c := range cmds {
		v, err := c.Slice()
		if err != nil {
			return redisError("read the entry "+dead[i].id+" of "+m.streams[dead[i].partition], err)
		}
		if f, ok := rawFields(v); ok {
			dead[i].fields = f
		}
	}
	return nil
}

// rawFields reads the fields of an XRANGE reply of one entry:
// [[id, [name, value, ...]]].
func rawFields(reply []any) ([]Field, bool) {
	if len(reply) != 1 {
		return nil, false
	}
	entry, _ := reply[0].([]any)
	if len(entry) != 2 {
		return nil, false
	}
	flat, _ := entry[1].([]any)
	out := make([]Field, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		name, _ := flat[i].(string)
		value, _ := flat[i+1].(string)
		out = append(out, Field{name, value})
	}
	return out, true
}

// deadLetterColumns are the columns DeadLetters reads.
const deadLetterColumns = `partition, stream_id, stream_key, consumer_group, fields, reason, recorded_at,
	resolved_at, coalesce(resolution, '')`

func scanDeadLetter(rows pgx.CollectableRow) (DeadLetter, error) {
	var d DeadLetter
	var part int32
	var raw []byte
	var resolved *time.Time
	if err := rows.Scan(&part, &d.StreamID, &d.StreamKey, &d.Group, &raw, &d.Reason, &d.RecordedAt,
		&resolved, &d.Resolution); err != nil {
		return d, err
	}
	d.Partition = int(part)
	if resolved != nil {
		d.ResolvedAt = *resolved
	}
	var err error
	if d.Fields, err = decodeFields(raw); err != nil {
		return d, fmt.Errorf("dead letter %d/%s: %w", d.Partition, d.StreamID, err)
	}
	return d, nil
}

// DeadLetters returns the open dead letters (not resolved), oldest first,
// at most limit of them (negative: all), and how many are open.
func (m *Mirror) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, int, error) {
	if m.err != nil {
		return nil, 0, m.err
	}
	var total int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM lock_dead_letters WHERE resolved_at IS NULL`).Scan(&total); err != nil {
		return nil, 0, pgError("count dead letters", err)
	}
	if limit < 0 {
		limit = total
	}
	rows, _ := m.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM lock_dead_letters WHERE resolved_at IS NULL
		ORDER BY recorded_at, partition, stream_id LIMIT $1`, limit) // the error comes with the rows
	out, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, 0, pgError("read dead letters", err)
	}
	return out, total, nil
}

// ReplayResult says what ReplayDeadLetters did.
type ReplayResult struct {
	Replayed int          // applied to the ledger and the mirror, and resolved
	Failed   []DeadLetter // still refused; each with the reason of this attempt
}

// ReplayDeadLetters tries every open dead letter again, in stream order:
// it parses its fields (which an operator may have corrected with an
// UPDATE of the fields column) and applies the event to the ledger, with
// its original partition and stream id, and to the mirror, as if it had
// come from the stream, marking the dead letter resolved ("replayed") in
// the same transaction. A dead letter that still fails stays open with
// the new reason. Resolve one by hand (UPDATE ... SET resolved_at = now(),
// resolution = '...') to dismiss it.
func (m *Mirror) ReplayDeadLetters(ctx context.Context) (ReplayResult, error) {
	var res ReplayResult
	if m.err != nil {
		return res, m.err
	}
	open, _, err := m.DeadLetters(ctx, -1)
	if err != nil {
		return res, err
	}
	slices.SortFunc(open, func(a, b DeadLetter) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), compareIDs(a.StreamID, b.StreamID))
	})
	for _, d := range open {
		ok, err := m.replay(ctx, &d)
		if err != nil {
			return res, err
		}
		if ok {
			res.Replayed++
		} else {
			res.Failed = append(res.Failed, d)
		}
	}
	return res, nil
}

// replay tries one dead letter; it reports whether it was applied.
func (m *Mirror) replay(ctx context.Context, d *DeadLetter) (bool, error) {
	values := make(map[string]any, len(d.Fields))
	var err error
	for _, f := range d.Fields {
		if _, dup := values[f.Name]; dup {
			err = fmt.Errorf("entry %s: field %q appears twice", d.StreamID, f.Name)
		}
		values[f.Name] = f.Value
	}
	var e event
	if err == nil && d.Partition >= 0 && d.Partition < len(m.streams) {
		e, err = parseEvent(d.Partition, redis.XMessage{ID: d.StreamID, Values: values})
	} else if err == nil {
		err = fmt.Errorf("partition %d: the store has %d", d.Partition, len(m.streams))
	}
	if err != nil {
		err = errors.New(reasonMalformed + err.Error())
	}
	if err == nil {
		_, err = m.apply(ctx, work{events: []event{e}, resolve: []deadKey{{d.Partition, d.StreamID}}})
		if err == nil {
			return true, nil
		}
		if !refusedData(err) {
			return false, err
		}
		err = errors.New(reasonRefused + pgMessage(err))
	}
	d.Reason = "replay: " + err.Error()
	if _, err := m.pool.Exec(ctx, `UPDATE lock_dead_letters SET reason = $3 WHERE partition = $1 AND stream_id = $2`,
		d.Partition, d.StreamID, safeText(d.Reason)); err != nil {
		return false, pgError("record the reason of a dead letter", err)
	}
	return false, nil
}

// compareIDs orders two stream ids.
func compareIDs(a, b string) int {
	switch {
	case streamIDLess(a, b):
		return -1
	case streamIDLess(b, a):
		return 1
	}
	return 0
}
