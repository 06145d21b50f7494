package redisstore

import (
	"errors"
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
	ok := []any{int64(1), "w1", int64(2), "9007199254740993", int64(1700000000000), int64(1700000060000),
		int64(59000), "host-1", int64(1), int64(3), int64(2), int64(0)}
	rp, err := parseReply(r, ok)
	if err != nil || rp.status != 1 {
		t.Fatalf("parseReply(ok) = %d, %v", rp.status, err)
	}
	want := coordinator.Lease{Resource: r, Owner: "w1", Count: 2, Token: 9007199254740993,
		AcquiredAt: time.UnixMilli(1700000000000), ExpiresAt: time.UnixMilli(1700000060000),
		Remaining: 59 * time.Second, Meta: "host-1", Mode: coordinator.ModeShared, Permits: 3}
	if l := rp.lease; l.Resource != want.Resource || l.Owner != want.Owner || l.Count != want.Count || l.Token != want.Token ||
		!l.AcquiredAt.Equal(want.AcquiredAt) || !l.ExpiresAt.Equal(want.ExpiresAt) || l.Remaining != want.Remaining ||
		l.Meta != want.Meta || l.Mode != want.Mode || l.Permits != want.Permits || rp.holders != 2 {
		t.Fatalf("lease = %+v, want %+v", l, want)
	}
	if rp, err := parseReply(r, []any{int64(-1)}); err != nil || rp.status != statusFree {
		t.Fatalf("free reply: %d, %v", rp.status, err)
	}
	rp, err = parseReply(r, []any{"0", "w2", "1", "5", "1", "2", "-1", "", "0", "0", "1", "4"})
	if err != nil || rp.status != statusConflict || rp.lease.Remaining != 0 || rp.queued != 4 {
		t.Fatalf("string-typed reply: %+v, %v", rp, err)
	}
	if ce := rp.conflict(); ce.Holder != "w2" || ce.Queued != 4 || ce.Holders != 1 || ce.Token != 5 {
		t.Fatalf("conflict of %+v = %+v", rp, ce)
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
		"short":                {ok[:2], "2 elements, want 12"},
		"long":                 {append(append([]any(nil), ok...), int64(7)), "13 elements, want 12"},
		"remaining":            {with(6, "soon"), "remaining"},
		"meta":                 {with(7, int64(1)), "meta"},
		"queued":               {with(11, nil), "queued"},
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
		if _, err := parseReply(r, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, tc.want)
		}
	}
	if tok, err := toUint(int64(42)); err != nil || tok != 42 {
		t.Errorf("toUint(int64 42) = %d, %v", tok, err)
	}
}

// TestParseClaim: a claim's reply of acquireall.lua is acquire.lua's
// reply, nested; anything else is an error.
func TestParseClaim(t *testing.T) {
	r := coordinator.Plan("1")
	if _, err := parseClaim(r, int64(1)); err == nil || !strings.Contains(err.Error(), "claim reply") {
		t.Fatalf("parseClaim(1) = %v, want an error naming the claim reply", err)
	}
	rp, err := parseClaim(r, []any{int64(-1)})
	if err != nil || rp.status != statusFree {
		t.Fatalf("parseClaim({-1}) = %+v, %v", rp, err)
	}
	if err := (scriptReply{status: 1}).refusal(coordinator.Request{Resource: r}); err != nil {
		t.Fatalf("refusal of an acquisition: %v", err)
	}
}

// TestParseAllReply: acquireall.lua's replies, also the shapes Redis
// never sends, give the leases or an error, never a panic.
func TestParseAllReply(t *testing.T) {
	a, b := coordinator.Plan("a"), coordinator.Plan("b")
	reqs := []coordinator.Request{{Resource: a, Owner: "w"}, {Resource: b, Owner: "w", Permits: 2, Mode: coordinator.ModeShared}}
	lease := []any{int64(1), "w", int64(1), "5", int64(1), int64(2), int64(1), "", int64(0), int64(0), int64(1), int64(0)}
	refused := func(st int64) []any { l := append([]any(nil), lease...); l[0] = st; return l }
	ls, err := parseAllReply(reqs, []any{int64(-1), lease, []any{int64(-1)}})
	if err != nil || ls[0].Token != 5 || ls[1].Resource != b || ls[1].Owner != "w" || ls[1].Token != 0 {
		t.Fatalf("a repeat, b's hold gone: %+v, %v", ls, err)
	}
	var ce *coordinator.ConflictError
	if _, err := parseAllReply(reqs, []any{int64(1), refused(0)}); !errors.As(err, &ce) || ce.Resource != a {
		t.Fatalf("a conflict of a: %v", err)
	}
	if _, err := parseAllReply(reqs, []any{int64(2), refused(-3)}); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("a cap refusal of b: %v", err)
	}
	for name, v := range map[string][]any{
		"short":              {int64(0)},
		"status":             {"x", lease},
		"claim not an array": {int64(1), "x"},
		"refused, status 1":  {int64(1), lease},
		"replies":            {int64(0), lease},
		"claim reply":        {int64(0), lease, "x"},
	} {
		if _, err := parseAllReply(reqs, v); err == nil || !strings.Contains(err.Error(), "acquire all") {
			t.Errorf("%s: %v, want an error", name, err)
		}
	}
}
