package pgaudit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// The event kinds of the ledger, written by the Lua scripts to the
// partition streams. EventExpired is also written by Cleanup for a lease
// that ended in Redis without an event (no process swept its partition:
// see redisstore's Store.ExpireDue); both write its ledger row under the
// stream id "expired:<token>" (see ledgerID), so that one expiry is one
// row whichever records it first.
const (
	EventAcquired    = "acquired"
	EventReentered   = "reentered"
	EventRenewed     = "renewed"
	EventDecremented = "decremented"
	EventReleased    = "released"
	EventForced      = "forced"
	EventExpired     = "expired"
)

// terminal reports whether an event ends its lease (the mirror deletes the
// row).
func terminal(kind string) bool {
	return kind == EventReleased || kind == EventForced || kind == EventExpired
}

// event is one stream entry, parsed.
type event struct {
	partition int
	id        string // stream entry id, "<ms>-<seq>"
	ms, seq   uint64
	kind      string
	typ, rid  string
	owner     string
	token     int64
	count     int32
	at        int64 // Redis time of the change, ms
	acquired  int64 // ms
	expires   int64 // ms
	req       string
	by        *string // a forced event's operator; nil: none named (NULL)
	shared    bool    // a shared hold (field mode "shared"; absent: exclusive)
	cap       int32   // the resource's cap (field cap; 0: none)
	meta      *string // the holder's metadata (field meta); nil: none (NULL)
}

// modeText is e's mode as the locks table stores it.
func (e *event) modeText() string {
	if e.shared {
		return "shared"
	}
	return "exclusive"
}

// ledgerMode is e's mode and cap as the ledger stores them: NULL for an
// exclusive event (the fields are absent), as the stream has them.
func (e *event) ledgerMode() (*string, *int32) {
	if !e.shared {
		return nil, nil
	}
	m, c := "shared", e.cap
	return &m, &c
}

// maxTime is the latest time, in Unix milliseconds, an event may carry:
// 9999-12-31T23:59:59.999Z. Postgres stores times to the year 294276, but
// a later time is a corrupt field, not a lease.
const maxTime = 253402300799999

// after reports whether e is later than o in the life of one resource: by
// fencing token, then by stream position.
func (e *event) after(o *event) bool {
	if e.token != o.token {
		return e.token > o.token
	}
	if e.ms != o.ms {
		return e.ms > o.ms
	}
	return e.seq > o.seq
}

// dbPosition returns the entry's stream position as the two bigint columns
// of the locks table hold it. A part beyond the range of a bigint (an id
// written by hand near 2^64: Redis then gives every later entry of the
// stream that same millisecond part) is stored as the largest bigint, so
// that the order of later entries still follows their sequence number.
func (e *event) dbPosition() (ms, seq int64) {
	return int64(min(e.ms, math.MaxInt64)), int64(min(e.seq, math.MaxInt64))
}

// parseStreamID reads "<ms>-<seq>", two unsigned 64-bit numbers.
func parseStreamID(id string) (ms, seq uint64, err error) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, fmt.Errorf("stream id %q: want <ms>-<seq>", id)
	}
	if ms, err = strconv.ParseUint(a, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stream id %q: bad milliseconds", id)
	}
	if seq, err = strconv.ParseUint(b, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stream id %q: bad sequence", id)
	}
	return ms, seq, nil
}

// fieldReader reads the fields of one entry, keeping the first error.
type fieldReader struct {
	msg redis.XMessage
	err error
}

// text returns a field that Postgres stores as text: UTF-8 without NUL.
func (r *fieldReader) text(field string) string {
	if r.err != nil {
		return ""
	}
	v, ok := r.msg.Values[field].(string)
	switch {
	case !ok:
		r.err = fmt.Errorf("entry %s: field %q missing", r.msg.ID, field)
	case !utf8.ValidString(v):
		r.err = fmt.Errorf("entry %s: field %q = %q: not valid UTF-8", r.msg.ID, field, v)
	case strings.IndexByte(v, 0) >= 0:
		r.err = fmt.Errorf("entry %s: field %q = %q: holds a NUL byte", r.msg.ID, field, v)
	}
	return v
}

// optional returns a text field that an entry may lack (a forced
// event's by, absent from the events written before it existed), nil
// when it is absent or empty.
func (r *fieldReader) optional(field string) *string {
	if _, ok := r.msg.Values[field]; !ok {
		return nil
	}
	if v := r.text(field); v != "" && r.err == nil {
		return &v
	}
	return nil
}

// num returns an integer field from lo to hi.
func (r *fieldReader) num(field string, lo, hi int64, what string) int64 {
	s := r.text(field)
	if r.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		r.err = fmt.Errorf("entry %s: field %q = %q: want %s from %d to %d", r.msg.ID, field, s, what, lo, hi)
	}
	return n
}

// time returns a time field: Unix milliseconds from 1970 to the year 9999.
func (r *fieldReader) time(field string) int64 {
	return r.num(field, 0, maxTime, "a time in Unix milliseconds")
}

// parseEvent reads a stream entry written by the scripts (see the XADD
// calls of internal/scripts/*.lua for the fields). It refuses what Postgres
// would refuse (text that is not UTF-8 or holds NUL, a time out of range),
// so that an entry it accepts is one Postgres stores as it is.
func parseEvent(partition int, msg redis.XMessage) (event, error) {
	e := event{partition: partition, id: msg.ID}
	var err error
	if e.ms, e.seq, err = parseStreamID(msg.ID); err != nil {
		return e, err
	}
	r := &fieldReader{msg: msg}
	e.kind = r.text("event")
	e.typ = r.text("type")
	e.rid = r.text("id")
	e.owner = r.text("owner")
	e.req = r.text("req")
	e.token = r.num("token", 1, math.MaxInt64, "an integer")
	e.count = int32(r.num("count", 0, math.MaxInt32, "an integer"))
	e.at = r.time("at")
	e.acquired = r.time("acquired_at")
	e.expires = r.time("expires_at")
	if e.kind == EventForced {
		e.by = r.optional("by")
	}
	e.meta = r.optional("meta")
	if mode := r.optional("mode"); mode != nil {
		if *mode != "shared" {
			return e, fmt.Errorf("entry %s: field \"mode\" = %q: want shared (or none: exclusive)", msg.ID, *mode)
		}
		e.shared = true
		e.cap = int32(r.num("cap", 0, math.MaxInt32, "an integer"))
	}
	if r.err != nil {
		return e, r.err
	}
	switch e.kind {
	case EventAcquired, EventReentered, EventRenewed, EventDecremented, EventReleased, EventForced, EventExpired:
	default:
		return e, fmt.Errorf("entry %s: unknown event %q", msg.ID, e.kind)
	}
	return e, nil
}

// ledgerID is the stream_id of e's ledger row: its stream entry id, but
// "expired:<token>" for an expiry, the id Cleanup gives the expiry it
// records, so that the event and Cleanup make one row, not two.
func (e *event) ledgerID() string {
	if e.kind == EventExpired {
		return "expired:" + strconv.FormatInt(e.token, 10)
	}
	return e.id
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// streamTime returns the time of a stream id's milliseconds, or false when
// they are beyond any real clock (an id written by hand).
func streamTime(ms uint64) (time.Time, bool) {
	if ms > maxTime {
		return time.Time{}, false
	}
	return msTime(int64(ms)), true
}
