package pgaudit

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestForcedBy: a forced event's operator is read when there is one;
// absent (an event written before the field existed) or empty, it is
// none (NULL); a by that Postgres would refuse dead-letters the entry.
func TestForcedBy(t *testing.T) {
	base := map[string]any{"event": "forced", "type": "plan", "id": "1", "owner": "w", "req": "r",
		"token": "5", "count": "0", "at": "1700000000000", "acquired_at": "1700000000000", "expires_at": "1700000060000"}
	entry := func(extra map[string]any) redis.XMessage {
		v := map[string]any{}
		for k, x := range base {
			v[k] = x
		}
		for k, x := range extra {
			v[k] = x
		}
		return redis.XMessage{ID: "1700000000000-0", Values: v}
	}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string // "" for nil
		bad   string
	}{
		{"named", map[string]any{"by": "alice"}, "alice", ""},
		{"not named", map[string]any{"by": ""}, "", ""},
		{"written before by existed", nil, "", ""},
		{"a released event's by is ignored", map[string]any{"event": "released", "by": "x"}, "", ""},
		{"NUL", map[string]any{"by": "a\x00b"}, "", "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseEvent(0, entry(tc.extra))
			switch {
			case tc.bad != "":
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("parseEvent: %v, want an error naming %s", err, tc.bad)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "" && e.by != nil:
				t.Fatalf("by = %q, want none", *e.by)
			case tc.want != "" && (e.by == nil || *e.by != tc.want):
				t.Fatalf("by = %v, want %q", e.by, tc.want)
			}
		})
	}
}

// TestModeCapMeta: an event's mode, cap and metadata are read when the
// scripts wrote them (a shared lease's mode and cap, metadata when the
// lease has some); absent, the event is exclusive, uncapped, without
// metadata; another mode or a bad cap dead-letters the entry. A dead
// letter keeps them.
func TestModeCapMeta(t *testing.T) {
	entry := func(extra map[string]any) redis.XMessage {
		v := map[string]any{"event": "acquired", "type": "plan", "id": "1", "owner": "w", "req": "r",
			"token": "5", "count": "1", "at": "1700000000000", "acquired_at": "1700000000000", "expires_at": "1700000060000"}
		for k, x := range extra {
			v[k] = x
		}
		return redis.XMessage{ID: "1700000000000-0", Values: v}
	}
	e, err := parseEvent(0, entry(map[string]any{"mode": "shared", "cap": "3", "meta": "host-1"}))
	if err != nil || !e.shared || e.cap != 3 || e.meta == nil || *e.meta != "host-1" || e.modeText() != "shared" {
		t.Fatalf("shared event: %+v, %v", e, err)
	}
	if m, c := e.ledgerMode(); m == nil || *m != "shared" || c == nil || *c != 3 {
		t.Fatalf("ledger mode of a shared event: %v %v", m, c)
	}
	f := e.fields()
	if got := f[len(f)-3:]; got[0] != (Field{"meta", "host-1"}) || got[1] != (Field{"mode", "shared"}) || got[2] != (Field{"cap", "3"}) {
		t.Fatalf("dead-letter fields %v", got)
	}
	e, err = parseEvent(0, entry(nil))
	if m, c := e.ledgerMode(); err != nil || e.shared || e.meta != nil || m != nil || c != nil || e.modeText() != "exclusive" || len(e.fields()) != 10 {
		t.Fatalf("exclusive event: %+v, %v", e, err)
	}
	for name, extra := range map[string]map[string]any{
		"another mode": {"mode": "both"},
		"a bad cap":    {"mode": "shared", "cap": "-1"},
		"no cap":       {"mode": "shared"},
	} {
		if _, err := parseEvent(0, entry(extra)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
