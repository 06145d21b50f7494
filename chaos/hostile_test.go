package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// hostile is the Redis and coordinator the hostile-input tests run
// against, and the keys seen so far: a key must never name two resources.
type hostile struct {
	srv   *testredis.Server
	admin *redis.Client
	store *redisstore.Store
	c     *coordinator.Coordinator
	seen  map[string]coordinator.Resource
}

const hostilePrefix = "hostile"

func newHostile(t testing.TB) *hostile {
	srv := testredis.Start(t)
	admin := srv.Client(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = client.Close() })
	store := redisstore.New(client, redisstore.WithPrefix(hostilePrefix), redisstore.WithPartitions(8))
	c := coordinator.New(store)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return &hostile{srv: srv, admin: admin, store: store, c: c, seen: map[string]coordinator.Resource{}}
}

// try runs acquire, re-enter, renew, inspect and release of (typ, id) by
// owner and checks: invalid input gets ErrInvalid before Redis is
// touched; valid input gets the key Key(r) under the prefix, with the
// partition tag first, parsed back to r, never the key of another
// resource; and no key of the server is ever outside the prefix.
func (h *hostile) try(t testing.TB, typ, id, owner string) {
	ctx := context.Background()
	r := coordinator.Resource{Type: typ, ID: id}
	valid := r.Validate() == nil && coordinator.ValidateOwner(owner) == nil
	if pr, err := coordinator.ParseResource(typ + "/" + id); err == nil && pr.Type == typ && pr.ID == id && r.Validate() != nil {
		t.Fatalf("ParseResource accepted %q, which Validate refuses", typ+"/"+id)
	}
	before, err := h.admin.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.c.Acquire(ctx, r, owner, coordinator.TTL(time.Minute))
	if !valid {
		if !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("Acquire(%q, %q, owner %q) = %v, want ErrInvalid", short(typ), short(id), short(owner), err)
		}
		var ve *coordinator.ValidationError
		if !errors.As(err, &ve) || ve.Field == "" || ve.Rule == "" {
			t.Fatalf("Acquire(%q): %v is not a *ValidationError naming the field and the rule", short(id), err)
		}
		for name, err := range map[string]error{
			"renew":   func() error { _, err := h.c.Renew(ctx, r, owner); return err }(),
			"release": func() error { _, err := h.c.Release(ctx, r, owner); return err }(),
			"hold": h.c.Hold(ctx, r, owner, func(context.Context, coordinator.Lease) error {
				t.Fatalf("Hold ran fn for invalid input %q", short(id))
				return nil
			}),
		} {
			if !errors.Is(err, coordinator.ErrInvalid) {
				t.Fatalf("%s(%q, %q, owner %q) = %v, want ErrInvalid", name, short(typ), short(id), short(owner), err)
			}
		}
		if after, _ := h.admin.DBSize(ctx).Result(); after != before {
			t.Fatalf("invalid input %q changed Redis: %d keys, then %d", short(id), before, after)
		}
		return
	}
	if err != nil {
		t.Fatalf("Acquire(%q, %q, owner %q) = %v", short(typ), short(id), short(owner), err)
	}
	key := h.store.Layout().LeaseKey(r)
	if !strings.HasPrefix(key, hostilePrefix+":{") {
		t.Fatalf("key %q of %v is outside the prefix", short(key), r)
	}
	if other, ok := h.seen[key]; ok && other != r {
		t.Fatalf("resources %q and %q share the key %q", short(other.String()), short(r.String()), short(key))
	}
	h.seen[key] = r
	if pr, p, err := h.store.Layout().ParseLeaseKey(key); err != nil || pr != r || p != h.store.Layout().Partition(r) {
		t.Fatalf("ParseKey(%q) = %v, %d, %v", short(key), pr, p, err)
	}
	got, err := h.admin.HGet(ctx, key, "owner").Result()
	if err != nil || got != owner {
		t.Fatalf("HGET %q owner = %q, %v; want %q", short(key), short(got), err, short(owner))
	}
	if l2, err := h.c.Acquire(ctx, r, owner); err != nil || l2.Count != 2 || l2.Token != l.Token {
		t.Fatalf("re-enter %v: %+v, %v", r, l2, err)
	}
	if _, err := h.c.Renew(ctx, r, owner, coordinator.TTL(time.Minute)); err != nil {
		t.Fatalf("renew %v: %v", r, err)
	}
	if in, err := h.c.Inspect(ctx, r); err != nil || in.Owner != owner || in.Count != 2 {
		t.Fatalf("inspect %v: %+v, %v", r, in, err)
	}
	other := "hostile-other"
	if owner == other {
		other += "-2"
	}
	if _, err := h.c.Acquire(ctx, r, other); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("another owner acquired %v: %v", r, err)
	}
	for want := 1; want >= 0; want-- {
		if rl, err := h.c.Release(ctx, r, owner); err != nil || rl.Count != want {
			t.Fatalf("release %v: %+v, %v (want %d left)", r, rl, err, want)
		}
	}
	if n, _ := h.admin.Exists(ctx, key).Result(); n != 0 {
		t.Fatalf("key %q left after the last release", short(key))
	}
	iter := h.admin.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		if k := iter.Val(); !strings.HasPrefix(k, hostilePrefix+":") {
			t.Fatalf("key %q outside the prefix %q", short(k), hostilePrefix)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// pieces are the bits hostile strings are made of: hash tag braces, the
// key separator, glob characters, control characters, invalid UTF-8,
// the key layout's own words, non-printable and multi-byte runes.
var pieces = []string{
	"{", "}", ":", "*", "?", "[", "]", "\\", "\x00", "\n", "\r", "\t", " ", "\x7f",
	"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "é", "😀", "\u202e", "\u200b", "\ufeff",
	"plan", "lock", "owner", "req", "fence", "events", "{0}", "}{", ":lock:", "/", "%", "$", "\"", "'", "-", "_", "A", "z", "9",
}

func hostileString(rng *rand.Rand) string {
	switch rng.IntN(20) {
	case 0:
		return strings.Repeat("a", 1<<20) // 1 MB
	case 1:
		return strings.Repeat("{", 512)
	case 2:
		return ""
	}
	var b strings.Builder
	for range 1 + rng.IntN(12) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func hostileType(rng *rand.Rand) string {
	switch rng.IntN(4) {
	case 0:
		return hostileString(rng)
	case 1:
		return []string{"Plan", "plan:x", "plan{1}", "9plan", "plan*", "pl\x00an", strings.Repeat("p", 65)}[rng.IntN(7)]
	}
	return []string{"plan", "project", "p", "a-b_c9", strings.Repeat("t", 64)}[rng.IntN(5)]
}

// TestHostileInput is scenario 8: resources and owners made of hash tag
// braces, separators, globs, NUL, invalid UTF-8 and 1 MB strings. Each
// gets a clear ErrInvalid or a correct key of its own under the prefix;
// nothing panics, nothing escapes the prefix.
func TestHostileInput(t *testing.T) {
	parallel(t)
	n := size(400, 20000)
	h := newHostile(t)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	valid := 0
	for range n {
		typ, id, owner := hostileType(rng), hostileString(rng), hostileString(rng)
		if rng.IntN(3) == 0 {
			owner = "worker-1"
		}
		r := coordinator.Resource{Type: typ, ID: id}
		if r.Validate() == nil && coordinator.ValidateOwner(owner) == nil {
			valid++
		}
		h.try(t, typ, id, owner)
	}
	report(t, "hostile input: %d random resources and owners, %d valid (each its own key under the prefix), %d refused with ErrInvalid, %d distinct keys, no panic, no key outside the prefix",
		n, valid, n-valid, len(h.seen))
	if valid == 0 || valid == n {
		t.Errorf("the generator made %d valid inputs of %d: both kinds are needed", valid, n)
	}
}

// FuzzHostileInput is TestHostileInput driven by the fuzzer (go test
// -fuzz=FuzzHostileInput ./chaos/); go test runs the seeds.
func FuzzHostileInput(f *testing.F) {
	for _, s := range [][3]string{
		{"plan", "42", "worker-1"},
		{"plan", "{0}", "w"},
		{"plan", "a}b{c", "{owner}"},
		{"plan", "x:lock:plan:y", "o:w:n"},
		{"plan", "*", "*"},
		{"plan", "a\x00b", "w"},
		{"plan", "w", "o\x00"},
		{"plan", "\xff\xfe", "w"},
		{"plan", "é😀", "\xc3"},
		{"plan", strings.Repeat("x", 1<<20), "w"},
		{"plan", "w", strings.Repeat("o", 1<<20)},
		{"plan", strings.Repeat("é", 256), strings.Repeat("o", 512)},
		{"plan{1}", "x", "w"},
		{"Plan", "x", "w"},
		{"pl:an", "x", "w"},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	h := newHostile(f)
	f.Fuzz(func(t *testing.T, typ, id, owner string) {
		h.try(t, typ, id, owner)
	})
}
