package scripts

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// TestBuild: each .lua file but lib.lua is one script of All, built as
// lib.lua followed by the file, and named in the package doc.
func TestBuild(t *testing.T) {
	files, err := filepath.Glob("*.lua")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if !strings.Contains(string(doc), f) {
			t.Errorf("the package doc does not name %s", f)
		}
		if f == "lib.lua" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum([]byte(libSrc + string(src)))
		want = append(want, hex.EncodeToString(sum[:]))
	}
	var got []string
	for _, s := range All() {
		got = append(got, s.Hash())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("All() hashes %v, want those of lib.lua + each script file %v", got, want)
	}
	if !slices.Equal(All(), []*redis.Script{Acquire(), Renew(), Release(), Unqueue()}) {
		t.Fatal("All() is not Acquire, Renew, Release, Unqueue")
	}
}

// TestLibReadsNoSlots: the helpers take what they need as arguments, so
// each script's header alone documents its KEYS and ARGV.
func TestLibReadsNoSlots(t *testing.T) {
	slot := regexp.MustCompile(`\b(KEYS|ARGV)\[`)
	for i, l := range strings.Split(libSrc, "\n") {
		if c := strings.Index(l, "--"); c >= 0 {
			l = l[:c]
		}
		if slot.MatchString(l) {
			t.Errorf("lib.lua:%d reads a script's KEYS or ARGV: %s", i+1, l)
		}
	}
}

// onBoth runs fn on miniredis and on a throwaway redis-server (skipped
// when redis-server is missing, failed under CI).
func onBoth(t *testing.T, fn func(t *testing.T, c *redis.Client)) {
	t.Run("miniredis", func(t *testing.T) {
		mr := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		fn(t, c)
	})
	t.Run("redis", func(t *testing.T) { fn(t, testredis.Start(t).Client(t)) })
}

// lua runs body after lib.lua and returns its reply.
func lua(t *testing.T, c *redis.Client, body string, keys ...string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Eval(ctx, libSrc+body, keys).Result()
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return v
}

// TestLibLists: find matches whole words only, cut removes one, remember
// keeps the last 8 request ids, newest first.
func TestLibLists(t *testing.T) {
	onBoth(t, func(t *testing.T, c *redis.Client) {
		for body, want := range map[string]string{
			`return tostring((find('a ab b', 'b')))`:           "6",
			`return tostring((find('ab ba', 'a')))`:            "nil",
			`return tostring((find('a b', 'a')))`:              "1",
			`return tostring((find('', 'a')))`:                 "nil",
			`return tostring((find('x1 x', 'x')))`:             "4",
			`return tostring(select(2, find('bb b c', 'b')))`:  "4",
			`return cut('a b c', 3, 3)`:                        "a c",
			`return cut('a b c', 1, 1)`:                        "b c",
			`return cut('a b c', 5, 5)`:                        "a b",
			`return cut('a', 1, 1)`:                            "",
			`return remember('', 'r1')`:                        "r1",
			`return remember('r1', 'r2')`:                      "r2 r1",
			`return remember('r7 r6 r5 r4 r3 r2 r1', 'r8')`:    "r8 r7 r6 r5 r4 r3 r2 r1",
			`return remember('r8 r7 r6 r5 r4 r3 r2 r1', 'r9')`: "r9 r8 r7 r6 r5 r4 r3 r2",
		} {
			if got := lua(t, c, body); got != want {
				t.Errorf("%s = %q, want %q", body, got, want)
			}
		}
	})
}

// TestLibKeys: the helpers that touch keys.
func TestLibKeys(t *testing.T) {
	onBoth(t, func(t *testing.T, c *redis.Client) {
		ctx := context.Background()
		// raise_ttl: to twice ms when under ms, else untouched
		if err := c.Set(ctx, "idx", "x", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		lua(t, c, `raise_ttl(KEYS[1], 5000) return 0`, "idx")
		if ttl := c.PTTL(ctx, "idx").Val(); ttl <= 5*time.Second || ttl > 10*time.Second {
			t.Fatalf("PTTL after raise_ttl under the TTL = %v, want the 10s kept", ttl)
		}
		lua(t, c, `raise_ttl(KEYS[1], 30000) return 0`, "idx")
		if ttl := c.PTTL(ctx, "idx").Val(); ttl <= 50*time.Second || ttl > time.Minute {
			t.Fatalf("PTTL after raise_ttl(30s) = %v, want 60s", ttl)
		}
		// store_queue: keeps the TTL, deletes an empty queue
		if err := c.Set(ctx, "q", "a b", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		lua(t, c, `store_queue(KEYS[1], 'b') return 0`, "q")
		if v, ttl := c.Get(ctx, "q").Val(), c.PTTL(ctx, "q").Val(); v != "b" || ttl <= 0 {
			t.Fatalf("queue %q with PTTL %v, want b with its TTL", v, ttl)
		}
		lua(t, c, `store_queue(KEYS[1], '') return 0`, "q")
		if n := c.Exists(ctx, "q").Val(); n != 0 {
			t.Fatal("an empty queue was not deleted")
		}
		// read_lease and lease_reply: a free resource, then a lease
		if got := lua(t, c, `return tostring(read_lease(KEYS[1])[1])`, "lock"); got != "false" {
			t.Fatalf("owner of a free resource %v, want false", got)
		}
		if err := c.HSet(ctx, "lock", "owner", "w", "count", "2", "token", "123456789012345678", "acquired_at", "10", "expires_at", "20").Err(); err != nil {
			t.Fatal(err)
		}
		got := lua(t, c, `return lease_reply(2, read_lease(KEYS[1]))`, "lock")
		if want := []any{int64(2), "w", int64(2), "123456789012345678", int64(10), int64(20)}; !slices.Equal(got.([]any), want) {
			t.Fatalf("lease_reply = %v, want %v", got, want)
		}
		// now_ms: Redis time
		ms := lua(t, c, `return now_ms()`).(int64)
		if d := time.Since(time.UnixMilli(ms)); d < -time.Minute || d > time.Minute {
			t.Fatalf("now_ms %d is not near now", ms)
		}
		// notify_first with PUBLISH and nobody listening: every waiter is
		// skipped
		got = lua(t, c, `local q, sent = notify_first('a b', '1', 'ch', 'm') return {q, tostring(sent)}`)
		if want := []any{"", "false"}; !slices.Equal(got.([]any), want) {
			t.Fatalf("notify_first with PUBLISH = %v, want %v", got, want)
		}
	})
}
