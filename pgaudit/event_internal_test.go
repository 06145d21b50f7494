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
