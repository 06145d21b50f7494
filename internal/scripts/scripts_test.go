package scripts

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
		if f == "lib.lua" || f == "core.lua" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// core.lua, the fast path (up to a line "--@lib"), lib.lua, the rest
		body := coreSrc + libSrc + string(src)
		if i := strings.Index(string(src), "\n--@lib\n"); i >= 0 {
			body = coreSrc + string(src[:i]) + "\n" + libSrc + string(src[i+len("\n--@lib\n"):])
		}
		if f == "acquireall.lua" {
			one := strings.Replace(acquireSrc, "\n--@lib\n", "\n", 1)
			body = coreSrc + libSrc + "local function acquire_one(KEYS, ARGV)\n" + one + "\nend\n" + string(src)
		}
		sum := sha1.Sum([]byte(body))
		want = append(want, hex.EncodeToString(sum[:]))
	}
	var got []string
	for _, s := range All() {
		got = append(got, s.Hash())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("All() hashes %v, want those of core.lua, lib.lua and each script file %v", got, want)
	}
	if !slices.Equal(All(), []*redis.Script{Acquire(), Renew(), Release(), Unqueue(), AcquireAll(), Expire()}) {
		t.Fatal("All() is not Acquire, Renew, Release, Unqueue, AcquireAll, Expire")
	}
}

// TestLibReadsNoSlots: the helpers take what they need as arguments, so
// each script's header alone documents its KEYS and ARGV.
func TestLibReadsNoSlots(t *testing.T) {
	slot := regexp.MustCompile(`\b(KEYS|ARGV)\[`)
	for name, src := range map[string]string{"core.lua": coreSrc, "lib.lua": libSrc} {
		for i, l := range strings.Split(src, "\n") {
			if c := strings.Index(l, "--"); c >= 0 {
				l = l[:c]
			}
			if slot.MatchString(l) {
				t.Errorf("%s:%d reads a script's KEYS or ARGV: %s", name, i+1, l)
			}
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

// lua runs body after core.lua and lib.lua and returns its reply.
func lua(t *testing.T, c *redis.Client, body string, keys ...string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Eval(ctx, coreSrc+libSrc+body, keys).Result()
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
		// queue_list: lapsed places and words of another form dropped;
		// queue_pos; store_list keeps the TTL or sets one, deletes an
		// empty queue
		got0 := lua(t, c, `local l = queue_list('a@100 b@50 c d@x e@200', 60) return {#l, l[1][1], l[2][1], queue_pos(l, 'e'), tostring(queue_pos(l, 'b')), tostring(queue_pos(l, ''))}`)
		if want := []any{int64(2), "a", "e", int64(2), "nil", "nil"}; !slices.Equal(got0.([]any), want) {
			t.Fatalf("queue_list = %v, want %v", got0, want)
		}
		if got := lua(t, c, `return #queue_list(nil, 0)`); got != int64(0) {
			t.Fatalf("queue_list(nil) has %v entries", got)
		}
		if err := c.Set(ctx, "q", "a@1 b@2", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		lua(t, c, `store_list(KEYS[1], {{'b', '2'}}) return 0`, "q")
		if v, ttl := c.Get(ctx, "q").Val(), c.PTTL(ctx, "q").Val(); v != "b@2" || ttl <= 5*time.Second {
			t.Fatalf("queue %q with PTTL %v, want b@2 with its TTL", v, ttl)
		}
		lua(t, c, `store_list(KEYS[1], {{'b', '2'}, {'c', '3'}}, 2000) return 0`, "q")
		if v, ttl := c.Get(ctx, "q").Val(), c.PTTL(ctx, "q").Val(); v != "b@2 c@3" || ttl > 2*time.Second {
			t.Fatalf("queue %q with PTTL %v, want b@2 c@3 living 2s", v, ttl)
		}
		lua(t, c, `store_list(KEYS[1], {}) return 0`, "q")
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
		want := []any{int64(2), "w", int64(2), "123456789012345678", int64(10), int64(20), int64(-1), "", int64(0), int64(0), int64(1), int64(0)}
		if !slices.Equal(got.([]any), want) {
			t.Fatalf("lease_reply = %v, want %v", got, want)
		}
		// with now: the time left, never below 0; with metadata
		if err := c.HSet(ctx, "lock", "meta", "host-1").Err(); err != nil {
			t.Fatal(err)
		}
		got = lua(t, c, `return {lease_reply(2, read_lease(KEYS[1]), 15), lease_reply(2, read_lease(KEYS[1]), 25)}`, "lock")
		if l := got.([]any); l[0].([]any)[6] != int64(5) || l[1].([]any)[6] != int64(0) || l[0].([]any)[7] != "host-1" {
			t.Fatalf("lease_reply with now = %v, want 5 then 0 ms left, meta host-1", got)
		}
		// event_fields: the metadata only when there is some
		got = lua(t, c, `return {#event_fields('acquired', 't', 'i', 'o', '1', '1', '2', '3', '4', 'r', ''), event_fields('acquired', 't', 'i', 'o', '1', '1', '2', '3', '4', 'r', 'm')[22]}`)
		if l := got.([]any); l[0] != int64(20) || l[1] != "m" {
			t.Fatalf("event_fields = %v, want 20 fields without meta, meta last with it", got)
		}
		// redis_time: Redis time, in ms and, exactly, in µs
		got = lua(t, c, `local ms, us = redis_time() return {ms, us}`)
		ms, us := got.([]any)[0].(int64), got.([]any)[1].(string)
		if d := time.Since(time.UnixMilli(ms)); d < -time.Minute || d > time.Minute {
			t.Fatalf("redis_time %d is not near now", ms)
		}
		if n, err := strconv.ParseInt(us, 10, 64); err != nil || n/1000 != ms {
			t.Fatalf("redis_time µs %q, ms %d", us, ms)
		}
		// notify_first with PUBLISH and nobody listening: every waiter is
		// skipped
		got = lua(t, c, `local l = {{'a', '1'}, {'b', '1'}} local sent, changed = notify_first(l, '1', 'ch', 'm') return {#l, tostring(sent), tostring(changed)}`)
		if want := []any{int64(0), "false", "true"}; !slices.Equal(got.([]any), want) {
			t.Fatalf("notify_first with PUBLISH = %v, want %v", got, want)
		}
	})
}

// TestLibNumbers: decimal strings are checked and counted exactly, beyond
// the integers a double holds.
func TestLibNumbers(t *testing.T) {
	onBoth(t, func(t *testing.T, c *redis.Client) {
		for body, want := range map[string]string{
			`return tostring(digits('123', 3))`:                             "true",
			`return tostring(digits('1234', 3))`:                            "false",
			`return tostring(digits('', 3))`:                                "false",
			`return tostring(digits('1.5', 3))`:                             "false",
			`return tostring(digits('-1', 3))`:                              "false",
			`return tostring(digits(false, 3))`:                             "false",
			`return tostring(is_token('9223372036854775807'))`:              "true",
			`return tostring(is_token('9223372036854775808'))`:              "false",
			`return tostring(is_token('0'))`:                                "false",
			`return tostring(is_token('017'))`:                              "false",
			`return tostring(is_token('17'))`:                               "true",
			`return incr('0')`:                                              "1",
			`return incr('9')`:                                              "10",
			`return incr('9007199254740993')`:                               "9007199254740994",
			`return incr('1299')`:                                           "1300",
			`return incr('9223372036854775806')`:                            "9223372036854775807",
			`return tostring(less('99', '100'))`:                            "true",
			`return tostring(less('100', '99'))`:                            "false",
			`return tostring(less('9007199254740993', '9007199254740994'))`: "true",
			`return tostring(less('5', '5'))`:                               "false",
		} {
			if got := lua(t, c, body); got != want {
				t.Errorf("%s = %q, want %q", body, got, want)
			}
		}
	})
}

// TestLibChecks: what the scripts refuse to change, and the keys they
// replace rather than fail on.
func TestLibChecks(t *testing.T) {
	onBoth(t, func(t *testing.T, c *redis.Client) {
		ctx := context.Background()
		// next_token: max(last + 1, now), exact; the counter put back by
		// undo; a corrupt counter refused and left as it was
		if err := c.Set(ctx, "fence", "9007199254740993", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got := lua(t, c, `local tok, undo = next_token(KEYS[1], '5', '16', '1') return tok`, "fence"); got != "9007199254740994" {
			t.Fatalf("next_token above the clock = %v", got)
		}
		if got := lua(t, c, `local tok, undo = next_token(KEYS[1], '9007199254740999', '16', '1') undo() return tok`, "fence"); got != "9007199254740999" {
			t.Fatalf("next_token below the clock = %v", got)
		}
		if v := c.Get(ctx, "fence").Val(); v != "9007199254740994/16" {
			t.Fatalf("fence after undo = %q", v)
		}
		if got := lua(t, c, `local tok, undo = next_token(KEYS[1], '7', '16', '1') undo() return tok`, "nofence"); got != "7" {
			t.Fatalf("next_token without a counter = %v", got)
		}
		if n := c.Exists(ctx, "nofence").Val(); n != 0 {
			t.Fatal("undo left a counter that was not there")
		}
		for _, v := range []string{"abc", "-1", "9223372036854775807", "1e3", "abc/16", "5/x", "5/"} {
			if err := c.Set(ctx, "fence", v, 0).Err(); err != nil {
				t.Fatal(err)
			}
			got := lua(t, c, `local tok, undo, why = next_token(KEYS[1], '5', '16', '1') return {tostring(tok), why}`, "fence").([]any)
			if got[0] != "nil" || !strings.HasPrefix(got[1].(string), "corrupt fence fence holds ") {
				t.Errorf("next_token with fence %q = %v", v, got)
			}
			if now := c.Get(ctx, "fence").Val(); now != v {
				t.Errorf("a refused next_token left the fence %q, was %q", now, v)
			}
		}
		// the partition count's marker: another count refused, a missing
		// one refused unless mark is "1", the counter left as it was
		for _, tc := range []struct{ fence, mark, want string }{
			{"17/8", "1", "partitions fence is marked \"8\" (the partition count of the store that wrote it), this store has 16 partitions"},
			{"17", "0", "unmarked fence: the partition count must be checked"},
			{"", "0", "unmarked fence: the partition count must be checked"},
		} {
			c.Del(ctx, "fence")
			if tc.fence != "" {
				c.Set(ctx, "fence", tc.fence, 0)
			}
			got := lua(t, c, "local tok, undo, why = next_token(KEYS[1], '5', '16', '"+tc.mark+"') return {tostring(tok), why}", "fence").([]any)
			if got[0] != "nil" || got[1] != tc.want {
				t.Errorf("next_token with fence %q, mark %s = %q, want %q", tc.fence, tc.mark, got, tc.want)
			}
			if now, _ := c.Get(ctx, "fence").Result(); now != tc.fence {
				t.Errorf("a refused next_token left the fence %q, was %q", now, tc.fence)
			}
		}
		c.Set(ctx, "fence", "17/16", 0)
		if got := lua(t, c, `local tok = next_token(KEYS[1], '5', '16', '0') return tok`, "fence"); got != "18" {
			t.Errorf("next_token with its own marker = %v, want 18", got)
		}
		c.Del(ctx, "fence")
		c.HSet(ctx, "fence", "a", "1")
		got := lua(t, c, `local tok, undo, why = next_token(KEYS[1], '5', '16', '1') return why`, "fence")
		if !strings.HasPrefix(got.(string), "corrupt fence fence: WRONGTYPE") {
			t.Errorf("next_token with a hash = %v", got)
		}

		// read_lease: a lease, a free key, and the faults
		c.HSet(ctx, "lock", "owner", "w", "count", "2", "token", "17", "acquired_at", "10", "expires_at", "20")
		if got := lua(t, c, `local h, why = read_lease(KEYS[1]) return {h[1], tostring(why)}`, "lock"); !slices.Equal(got.([]any), []any{"w", "nil"}) {
			t.Errorf("read_lease of a lease = %v", got)
		}
		for field, v := range map[string]string{"owner": "", "count": "x", "token": "0", "acquired_at": "-1", "expires_at": "1.5"} {
			c.HSet(ctx, "bad", "owner", "w", "count", "2", "token", "17", "acquired_at", "10", "expires_at", "20", field, v)
			want := "corrupt lease bad: field " + field + " = \"" + v + "\""
			if got := lua(t, c, `local h, why = read_lease(KEYS[1]) return why`, "bad"); got != want {
				t.Errorf("read_lease with %s=%q: %v, want %q", field, v, got, want)
			}
			c.Del(ctx, "bad")
		}
		c.HSet(ctx, "bad", "count", "2")
		if got := lua(t, c, `local h, why = read_lease(KEYS[1]) return why`, "bad"); got != "corrupt lease bad: field owner missing" {
			t.Errorf("read_lease without owner: %v", got)
		}
		c.Del(ctx, "bad")
		c.Set(ctx, "bad", "x", 0)
		if got := lua(t, c, `local h, why = read_lease(KEYS[1]) return why`, "bad"); !strings.HasPrefix(got.(string), "corrupt lease bad: WRONGTYPE") {
			t.Errorf("read_lease of a string: %v", got)
		}

		// append_event: off, on, refused
		if got := lua(t, c, `return tostring(append_event(KEYS[1], '0', {'a', 'b'}))`, "stream"); got != "nil" {
			t.Errorf("append_event with the outbox off = %v", got)
		}
		if n := c.Exists(ctx, "stream").Val(); n != 0 {
			t.Error("append_event with the outbox off wrote")
		}
		if got := lua(t, c, `return tostring(append_event(KEYS[1], '10', {'a', 'b'}))`, "stream"); got != "nil" || c.XLen(ctx, "stream").Val() != 1 {
			t.Errorf("append_event = %v", got)
		}
		if got := lua(t, c, `return append_event(KEYS[1], '10', {'a', 'b'})`, "bad"); !strings.HasPrefix(got.(string), "outbox bad: WRONGTYPE") {
			t.Errorf("append_event to a string = %v", got)
		}

		// index_add, index_remove, read_queue: a key of another type
		c.Set(ctx, "idx", "x", 0)
		lua(t, c, `index_add(KEYS[1], 'plan/1') return 0`, "idx")
		if m := c.SMembers(ctx, "idx").Val(); !slices.Equal(slices.Sorted(slices.Values(m)), []string{"", "plan/1"}) {
			t.Errorf("index_add over a string: %q", m)
		}
		lua(t, c, `index_remove(KEYS[1], 'plan/1') return 0`, "idx")
		if m := c.SMembers(ctx, "idx").Val(); !slices.Equal(m, []string{""}) {
			t.Errorf("index_remove: %q", m)
		}
		c.Del(ctx, "idx")
		c.RPush(ctx, "idx", "x")
		lua(t, c, `index_remove(KEYS[1], 'plan/1') return 0`, "idx")
		if n := c.Exists(ctx, "idx").Val(); n != 0 {
			t.Error("index_remove left a list")
		}
		c.RPush(ctx, "q", "x")
		if got := lua(t, c, `return tostring(read_queue(KEYS[1]))`, "q"); got != "nil" {
			t.Errorf("read_queue of a list = %v", got)
		}
		c.Del(ctx, "q")
		c.Set(ctx, "q", "a b", 0)
		if got := lua(t, c, `return read_queue(KEYS[1])`, "q"); got != "a b" {
			t.Errorf("read_queue = %v", got)
		}
		// fail: an error reply
		if _, err := c.Eval(ctx, coreSrc+libSrc+`return fail('x')`, nil).Result(); err == nil || err.Error() != "ERR lockcoord: x" {
			t.Errorf("fail = %v", err)
		}
	})
}
