package pgaudit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The event kinds of the ledger. All but EventExpired are written by the
// Lua scripts to the partition streams; EventExpired is written by Cleanup
// for a lease that ended in Redis without an event.
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
	ms, seq   int64
	kind      string
	typ, rid  string
	owner     string
	token     int64
	count     int32
	at        int64 // Redis time of the change, ms
	acquired  int64 // ms
	expires   int64 // ms
	req       string
}

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

// parseStreamID reads "<ms>-<seq>".
func parseStreamID(id string) (ms, seq int64, err error) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, fmt.Errorf("stream id %q: want <ms>-<seq>", id)
	}
	if ms, err = strconv.ParseInt(a, 10, 64); err != nil || ms < 0 {
		return 0, 0, fmt.Errorf("stream id %q: bad milliseconds", id)
	}
	if seq, err = strconv.ParseInt(b, 10, 64); err != nil || seq < 0 {
		return 0, 0, fmt.Errorf("stream id %q: bad sequence", id)
	}
	return ms, seq, nil
}

// parseEvent reads a stream entry written by the scripts (see the XADD
// calls of internal/scripts/*.lua for the fields).
func parseEvent(partition int, msg redis.XMessage) (event, error) {
	e := event{partition: partition, id: msg.ID}
	var err error
	if e.ms, e.seq, err = parseStreamID(msg.ID); err != nil {
		return e, err
	}
	str := func(field string) string {
		if err != nil {
			return ""
		}
		v, ok := msg.Values[field].(string)
		if !ok {
			err = fmt.Errorf("entry %s: field %q missing", msg.ID, field)
		}
		return v
	}
	num := func(field string, lo, hi int64) int64 {
		s := str(field)
		if err != nil {
			return 0
		}
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || n < lo || n > hi {
			err = fmt.Errorf("entry %s: field %q = %q: want an integer from %d to %d", msg.ID, field, s, lo, hi)
		}
		return n
	}
	e.kind = str("event")
	e.typ = str("type")
	e.rid = str("id")
	e.owner = str("owner")
	e.req = str("req")
	e.token = num("token", 1, math.MaxInt64)
	e.count = int32(num("count", 0, math.MaxInt32))
	e.at = num("at", 0, math.MaxInt64)
	e.acquired = num("acquired_at", 0, math.MaxInt64)
	e.expires = num("expires_at", 0, math.MaxInt64)
	if err != nil {
		return e, err
	}
	switch e.kind {
	case EventAcquired, EventReentered, EventRenewed, EventDecremented, EventReleased, EventForced:
	default:
		return e, fmt.Errorf("entry %s: unknown event %q", msg.ID, e.kind)
	}
	return e, nil
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
