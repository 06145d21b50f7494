package redisstore_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// allReqs returns requests of owner on rs, sharing request id id.
func allReqs(owner, id string, rs ...coordinator.Resource) []coordinator.Request {
	out := make([]coordinator.Request, len(rs))
	for i, r := range rs {
		out[i] = request(r, owner, id, time.Minute)
	}
	return out
}

// prefixKeys returns the keys of s's prefix.
func prefixKeys(t *testing.T, b *backend, s *redisstore.Store) []string {
	t.Helper()
	keys, err := b.client.Keys(context.Background(), s.Layout().KeyPattern()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(keys, func(k string) bool { return k == s.Layout().ConfigKey() })
}

// TestAcquireAllRefusesBadInput: bad request sets, modes, caps and
// metadata are refused before anything is written.
func TestAcquireAllRefusesBadInput(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		a, c := coordinator.Plan("a"), coordinator.Plan("c")
		many := make([]coordinator.Resource, coordinator.MaxClaims+1)
		for i := range many {
			many[i] = coordinator.Plan(strconv.Itoa(i))
		}
		mixedOwner := allReqs("w1", "x", a, c)
		mixedOwner[1].Owner = "w2"
		mixedID := allReqs("w1", "x", a, c)
		mixedID[1].RequestID = "y"
		for name, reqs := range map[string][]coordinator.Request{
			"none":                nil,
			"too many":            allReqs("w1", "x", many...),
			"a duplicate":         allReqs("w1", "x", a, c, a),
			"two owners":          mixedOwner,
			"two request ids":     mixedID,
			"an invalid resource": allReqs("w1", "x", a, coordinator.Resource{Type: "Bad", ID: "1"}),
			"an empty id":         allReqs("w1", "x", coordinator.Plan("")),
			"an invalid owner":    allReqs("w\x00", "x", a),
			"a bad request id":    allReqs("w1", "x y", a),
		} {
			if _, err := s.AcquireAll(ctx, reqs); !errors.Is(err, coordinator.ErrInvalid) {
				t.Errorf("AcquireAll with %s: %v, want ErrInvalid", name, err)
			}
		}
		for _, tc := range []struct {
			field  string
			change func(*coordinator.Request)
		}{
			{"mode", func(r *coordinator.Request) { r.Mode = coordinator.Mode(7) }},
			{"Permits", func(r *coordinator.Request) { r.Permits = 3 }},
			{"Permits", func(r *coordinator.Request) { r.Mode, r.Permits = coordinator.ModeShared, -1 }},
			{"Meta", func(r *coordinator.Request) { r.Meta = "a\nb" }},
		} {
			reqs := allReqs("w1", "x", a, c)
			tc.change(&reqs[1])
			var ve *coordinator.ValidationError
			if _, err := s.AcquireAll(ctx, reqs); !errors.As(err, &ve) || ve.Field != tc.field {
				t.Errorf("AcquireAll with a bad %s: %v, want ErrInvalid naming it", tc.field, err)
			}
			req := reqs[1]
			req.RequestID = "single"
			if _, err := s.Acquire(ctx, req); !errors.As(err, &ve) || ve.Field != tc.field {
				t.Errorf("Acquire with a bad %s: %v, want ErrInvalid naming it", tc.field, err)
			}
		}
		if keys := prefixKeys(t, b, s); len(keys) != 0 {
			t.Fatalf("refused requests wrote %v", keys)
		}
	})
}

// TestAcquireAllLongRequestID: the request IDs derived from a long one
// stay within the rule, and a repeat of it is still answered.
func TestAcquireAllLongRequestID(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := b.newStore(t)
	id := strings.Repeat("r", coordinator.MaxRequestIDLen)
	reqs := allReqs("w1", id, coordinator.Plan("l1"), coordinator.Project("l2"))
	first := must[[]coordinator.Lease](t)(s.AcquireAll(ctx, reqs))
	again := must[[]coordinator.Lease](t)(s.AcquireAll(ctx, reqs))
	for i := range first {
		if again[i].Count != 1 || again[i].Token != first[i].Token {
			t.Fatalf("repeat of a long request id: %+v after %+v", again[i], first[i])
		}
	}
}

// TestAcquireAllOrder: the requests are taken in the order partition,
// then key, whatever their order: of two busy resources the refusal names
// the first in that order.
func TestAcquireAllOrder(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		var rs []coordinator.Resource
		for i := range 12 {
			rs = append(rs, coordinator.Plan("o"+strconv.Itoa(i)))
		}
		busy := []coordinator.Resource{rs[3], rs[8]}
		for i, r := range busy {
			lease(t)(s.Acquire(ctx, request(r, "holder", "h"+strconv.Itoa(i), time.Minute)))
		}
		byOrder := slices.Clone(busy)
		slices.SortFunc(byOrder, func(x, y coordinator.Resource) int {
			l := s.Layout()
			return cmp.Or(cmp.Compare(l.Partition(x), l.Partition(y)), cmp.Compare(l.LeaseKey(x), l.LeaseKey(y)))
		})
		for n, given := range [][]coordinator.Resource{rs, reversed(rs)} {
			_, err := s.AcquireAll(ctx, allReqs("w1", "ord"+strconv.Itoa(n), given...))
			var ce *coordinator.ConflictError
			if !errors.As(err, &ce) || ce.Resource != byOrder[0] {
				t.Fatalf("AcquireAll of %d resources: %v, want the conflict of %s, first in the store's order", len(given), err, byOrder[0])
			}
			for _, r := range rs {
				if l, err := s.Inspect(ctx, r); err == nil && l.Owner == "w1" {
					t.Fatalf("%s left held by a refused AcquireAll", r)
				}
			}
		}
	})
}

func reversed(rs []coordinator.Resource) []coordinator.Resource {
	out := slices.Clone(rs)
	slices.Reverse(out)
	return out
}

// TestAcquireAllQueued: the acquisition of the resource waited for is
// queued; a refusal of another one does not queue the waiter; a success
// takes the waiter out of the queue.
func TestAcquireAllQueued(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		a, c := coordinator.Plan("qa"), coordinator.Plan("qc")
		queue := func(r coordinator.Resource) string {
			v, _ := b.client.Get(ctx, s.Layout().QueueKey(r)).Result()
			return strings.Join(waiterIDs(t, v), " ")
		}
		lease(t)(s.Acquire(ctx, request(a, "holder", "h1", time.Minute)))
		if _, err := s.AcquireAllQueued(ctx, allReqs("w1", "q1", a, c), "W", a, coordinator.Queueing{}); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("queued AcquireAll: %v", err)
		}
		if q := queue(a); q != "W" {
			t.Fatalf("queue of %s = %q, want W", a, q)
		}
		lease(t)(s.Release(ctx, request(a, "holder", "h2", 0)))
		lease(t)(s.Acquire(ctx, request(c, "holder", "h3", time.Minute)))
		if _, err := s.AcquireAllQueued(ctx, allReqs("w1", "q2", a, c), "W", a, coordinator.Queueing{}); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("queued AcquireAll, %s busy: %v", c, err)
		}
		if q := queue(c); q != "" {
			t.Fatalf("queue of %s = %q: the refusal of a resource not waited for queued the waiter", c, q)
		}
		lease(t)(s.Release(ctx, request(c, "holder", "h4", 0)))
		ls := must[[]coordinator.Lease](t)(s.AcquireAllQueued(ctx, allReqs("w1", "q3", a, c), "W", a, coordinator.Queueing{}))
		if ls[0].Resource != a || ls[1].Resource != c || ls[0].Owner != "w1" {
			t.Fatalf("leases %+v", ls)
		}
		if q := queue(a); q != "" {
			t.Fatalf("queue of %s = %q after the waiter's success", a, q)
		}
	})
}

// failHook fails the commands fail picks with the error it returns.
type failHook struct {
	fail func(args []any) error
}

func (h failHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h failHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.fail(cmd.Args()); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h failHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// has reports whether an argument of args, printed, contains s (a
// script's string arguments are strings or fmt.Stringers).
func has(args []any, s string) bool {
	for _, a := range args {
		if strings.Contains(fmt.Sprint(a), s) {
			return true
		}
	}
	return false
}

// TestAcquireAllCleanupFailures: when giving back what a refused
// AcquireAll took fails, the error says what stays held, and still
// matches the conflict.
func TestAcquireAllCleanupFailures(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name, arg, want string
	}{
		{"release", ":undo", "stays held until its TTL"},
		{"record", ":reqall:", "forgetting the attempt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMiniBackend(t)
			ctx := t.Context()
			s := b.newStore(t, redisstore.WithPartitions(4))
			rs := spread(t, s, "c", 2) // the ordered path, across partitions
			a, c := rs[0], rs[1]
			lease(t)(s.Acquire(ctx, request(c, "holder", "h1", time.Minute)))
			b.client.AddHook(failHook{fail: func(args []any) error {
				if has(args, tc.arg) && (tc.name == "release" || strings.EqualFold(fmt.Sprint(args[0]), "del")) {
					return boom
				}
				return nil
			}})
			_, err := s.AcquireAll(ctx, allReqs("w1", "x", a, c))
			if !errors.Is(err, coordinator.ErrConflict) || !errors.Is(err, boom) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AcquireAll = %v, want the conflict and %q", err, tc.want)
			}
		})
	}
}

// TestAcquireAllRecord: the record of an AcquireAll's nonce: a failure to
// write or read it is an error before anything is taken; one that lapsed
// between the two makes a new attempt.
func TestAcquireAllRecord(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fail func(args []any) error
		ok   bool
	}{
		{"write fails", func(args []any) error {
			if strings.EqualFold(fmt.Sprint(args[0]), "set") && has(args, ":reqall:") {
				return boom
			}
			return nil
		}, false},
		{"read fails", func(args []any) error {
			if strings.EqualFold(fmt.Sprint(args[0]), "get") && has(args, ":reqall:") {
				return boom
			}
			return nil
		}, false},
		{"lapsed", func(args []any) error {
			if strings.EqualFold(fmt.Sprint(args[0]), "get") && has(args, ":reqall:") {
				return redis.Nil
			}
			return nil
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMiniBackend(t)
			ctx := t.Context()
			s := b.newStore(t, redisstore.WithPartitions(4))
			rs := spread(t, s, "r", 2) // the ordered path, across partitions
			a := rs[0]
			reqs := allReqs("w1", "x", rs...)
			// a first call records the nonce: the second reads it
			must[[]coordinator.Lease](t)(s.AcquireAll(ctx, reqs))
			for _, r := range rs {
				lease(t)(s.Release(ctx, request(r, "w1", "r1", 0)))
			}
			if tc.name == "write fails" {
				reqs = allReqs("w1", "y", rs...)
			}
			b.client.AddHook(failHook{fail: tc.fail})
			ls, err := s.AcquireAll(ctx, reqs)
			switch {
			case tc.ok && (err != nil || ls[0].Count != 1):
				t.Fatalf("AcquireAll after the record lapsed = %+v, %v; want a new lease", ls, err)
			case !tc.ok && (!errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "redisstore: acquire all: ")):
				t.Fatalf("AcquireAll = %v, want the record's failure", err)
			case !tc.ok:
				if _, err := s.Inspect(ctx, a); !errors.Is(err, coordinator.ErrNotHeld) {
					t.Fatalf("%s taken although the record failed: %v", a, err)
				}
			}
		})
	}
}

// TestMultiCallsWithoutRedis: AcquireAll, AcquireAllQueued and Holders
// report a network failure as such.
func TestMultiCallsWithoutRedis(t *testing.T) {
	port, err := testredis.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s := redisstore.New(quickClient(t, "127.0.0.1:"+strconv.Itoa(port), -1))
	reqs := allReqs("w1", "x", coordinator.Plan("1"))
	errs := map[string]error{}
	_, errs["AcquireAll"] = s.AcquireAll(ctx, reqs)
	_, errs["AcquireAllQueued"] = s.AcquireAllQueued(ctx, reqs, "W", coordinator.Plan("1"), coordinator.Queueing{})
	_, errs["Holders"] = s.Holders(ctx, coordinator.Plan("1"))
	checkNetworkErrors(t, errs, true)
}

// TestHoldersOfAnExclusiveLease: Holders lists the exclusive lease.
func TestHoldersOfAnExclusiveLease(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := b.newStore(t)
	r := coordinator.Plan("h")
	if _, err := s.Holders(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("Holders of a free resource: %v", err)
	}
	l := lease(t)(s.Acquire(ctx, request(r, "w1", "a", time.Minute)))
	ls := must[[]coordinator.Lease](t)(s.Holders(ctx, r))
	if len(ls) != 1 || ls[0].Token != l.Token || ls[0].Mode != coordinator.ModeExclusive {
		t.Fatalf("Holders = %+v", ls)
	}
}

// spread returns n plans named <prefix><i>, each in a partition of its
// own in s.
func spread(t *testing.T, s *redisstore.Store, prefix string, n int) []coordinator.Resource {
	t.Helper()
	var out []coordinator.Resource
	seen := map[int]bool{}
	for i := 0; len(out) < n; i++ {
		if i > 1000 {
			t.Fatalf("no %d partitions for %d plans", n, n)
		}
		r := coordinator.Plan(prefix + strconv.Itoa(i))
		if p := s.Layout().Partition(r); !seen[p] {
			seen[p] = true
			out = append(out, r)
		}
	}
	return out
}

// colocated returns n plans named <prefix><i>, all in one partition of s.
func colocated(t *testing.T, s *redisstore.Store, prefix string, n int) []coordinator.Resource {
	t.Helper()
	out := []coordinator.Resource{coordinator.Plan(prefix + "0")}
	for i := 1; len(out) < n; i++ {
		if i > 10000 {
			t.Fatalf("no %d plans in one partition", n)
		}
		if r := coordinator.Plan(prefix + strconv.Itoa(i)); s.Layout().Partition(r) == s.Layout().Partition(out[0]) {
			out = append(out, r)
		}
	}
	return out
}

// TestAcquireAllOneScriptCorrupt: in one partition, a corrupt lease among
// the claims is ErrCorrupt and nothing is taken; a repeat after one of
// the holds went answers it as not held.
func TestAcquireAllOneScriptCorrupt(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		a, c := coordinator.Plan("oa"), coordinator.Plan("oc")
		if err := b.client.Set(ctx, s.Layout().LeaseKey(c), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireAll(ctx, allReqs("w1", "x1", a, c)); !errors.Is(err, redisstore.ErrCorrupt) ||
			!strings.HasPrefix(err.Error(), "redisstore: acquire all: ") {
			t.Fatalf("AcquireAll with a corrupt claim: %v, want ErrCorrupt", err)
		}
		if _, err := s.Inspect(ctx, a); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s taken beside a corrupt claim: %v", a, err)
		}
		if err := b.client.Del(ctx, s.Layout().LeaseKey(c)).Err(); err != nil {
			t.Fatal(err)
		}
		first := must[[]coordinator.Lease](t)(s.AcquireAll(ctx, allReqs("w1", "x2", a, c)))
		lease(t)(s.Release(ctx, request(c, "w1", "x3", 0)))
		again := must[[]coordinator.Lease](t)(s.AcquireAll(ctx, allReqs("w1", "x2", a, c)))
		if again[0].Token != first[0].Token || again[0].Count != 1 || again[1].Count != 0 || again[1].Resource != c {
			t.Fatalf("repeat after %s was released: %+v, want %s as it stands and %s not held", c, again, a, c)
		}
	})
}
