package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// The scripts' replies are checked here directly: Redis never sends some
// of these shapes, but a script change or a proxy might, and the store
// must answer with an error rather than a wrong lease or a panic.
func TestParseReply(t *testing.T) {
	r := coordinator.Plan("1")
	ok := []any{int64(1), "w1", int64(2), "9007199254740993", int64(1700000000000), int64(1700000060000)}
	st, l, err := parseReply(r, ok)
	if err != nil || st != 1 {
		t.Fatalf("parseReply(ok) = %d, %v", st, err)
	}
	want := coordinator.Lease{Resource: r, Owner: "w1", Count: 2, Token: 9007199254740993,
		AcquiredAt: time.UnixMilli(1700000000000), ExpiresAt: time.UnixMilli(1700000060000)}
	if l.Resource != want.Resource || l.Owner != want.Owner || l.Count != want.Count || l.Token != want.Token ||
		!l.AcquiredAt.Equal(want.AcquiredAt) || !l.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("lease = %+v, want %+v", l, want)
	}
	if st, _, err := parseReply(r, []any{int64(-1)}); err != nil || st != statusFree {
		t.Fatalf("free reply: %d, %v", st, err)
	}
	if st, _, err := parseReply(r, []any{"0", "w2", "1", "5", "1", "2"}); err != nil || st != statusConflict {
		t.Fatalf("string-typed reply: %d, %v", st, err)
	}
	with := func(i int, v any) []any {
		c := append([]any(nil), ok...)
		c[i] = v
		return c
	}
	for name, tc := range map[string]struct {
		v    []any
		want string
	}{
		"empty":                {nil, "empty script reply"},
		"status not a number":  {[]any{"x"}, "script status"},
		"status of wrong type": {[]any{1.5}, "script status"},
		"short":                {ok[:2], "2 elements, want 6"},
		"long":                 {append(append([]any(nil), ok...), int64(7)), "7 elements, want 6"},
		"owner not a string":   {with(1, int64(3)), "owner"},
		"owner nil":            {with(1, nil), "owner"},
		"count":                {with(2, "two"), "count"},
		"count of wrong type":  {with(2, []any{}), "count"},
		"negative token":       {with(3, int64(-1)), "token"},
		"token not a number":   {with(3, "1e5"), "token"},
		"token of wrong type":  {with(3, 2.0), "token"},
		"acquired_at":          {with(4, "noon"), "acquired_at"},
		"expires_at":           {with(5, nil), "expires_at"},
	} {
		if _, _, err := parseReply(r, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, tc.want)
		}
	}
	if tok, err := toUint(int64(42)); err != nil || tok != 42 {
		t.Errorf("toUint(int64 42) = %d, %v", tok, err)
	}
}
