package redisstore_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// snapshot returns every key of the store's prefix with its type, content
// and expiry: on a real Redis DUMP (hex) and PEXPIRETIME (absolute, so
// that it does not drift while the test runs), on miniredis its own dump
// of the keyspace and each key's TTL (miniredis's clock stands still).
func snapshot(t *testing.T, b *backend, layout redisstore.Layout) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	if b.mini != nil {
		out["(dump)"] = b.mini.Dump()
		for _, k := range b.mini.Keys() {
			out[k] = b.mini.Type(k) + " ttl " + b.mini.TTL(k).String()
		}
		return out
	}
	iter := b.client.Scan(ctx, 0, layout.KeyPattern(), 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		dump, err := b.client.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		at, err := b.client.Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			t.Fatalf("PEXPIRETIME %s: %v", k, err)
		}
		out[k] = hex.EncodeToString([]byte(dump)) + " expires " + strconv.FormatInt(at, 10)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameSnapshot fails t, naming what changed, unless before and after
// hold the same keys with the same contents and expiries.
func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if maps.Equal(before, after) {
		return
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if a, ok := after[k]; !ok {
			diff = append(diff, "deleted "+k)
		} else if a != before[k] {
			diff = append(diff, "changed "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[k]; !ok {
			diff = append(diff, "created "+k)
		}
	}
	t.Errorf("%s returned an error but changed the keys: %s", what, strings.Join(diff, ", "))
}

// failingCall is a store call that must fail with nothing changed.
type failingCall struct {
	name string
	call func(ctx context.Context) error
}

// leaseScene is a store with leases of w1 in one partition: r (count
// 2), one (count 1), and a free resource; w2 waits for r in its queue.
type leaseScene struct {
	s             *redisstore.Store
	r, one, free  coordinator.Resource
	ids           reqIDs
	events, fence string
}

func newLeaseScene(t *testing.T, b *backend, opts ...redisstore.Option) *leaseScene {
	ctx := t.Context()
	sc := &leaseScene{s: b.newStore(t, append([]redisstore.Option{redisstore.WithPartitions(1)}, opts...)...),
		r: coordinator.Plan("r"), one: coordinator.Plan("one"), free: coordinator.Plan("free")}
	lease(t)(sc.s.Acquire(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
	lease(t)(sc.s.Acquire(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
	lease(t)(sc.s.Acquire(ctx, request(sc.one, "w1", sc.ids.next(), time.Minute)))
	if _, err := acquireQueued(ctx, sc.s, sc.r, "w2", sc.ids.next(), "c0ffee", false); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("queued acquire: %v", err)
	}
	sc.events, sc.fence = sc.s.Layout().StreamKey(0), sc.s.Layout().FenceKey(0)
	return sc
}

// writes are the calls that change a lease, each of which must write its
// event.
func (sc *leaseScene) writes() []failingCall {
	req := func(r coordinator.Resource, owner string, ttl time.Duration) coordinator.Request {
		return request(r, owner, sc.ids.next(), ttl)
	}
	return []failingCall{
		{"Acquire of a free resource", func(ctx context.Context) error {
			_, err := sc.s.Acquire(ctx, req(sc.free, "w1", time.Minute))
			return err
		}},
		{"re-entering Acquire", func(ctx context.Context) error {
			_, err := sc.s.Acquire(ctx, req(sc.r, "w1", time.Minute))
			return err
		}},
		{"Renew", func(ctx context.Context) error { _, err := sc.s.Renew(ctx, req(sc.r, "w1", time.Hour)); return err }},
		{"Release of one hold", func(ctx context.Context) error { _, err := sc.s.Release(ctx, req(sc.r, "w1", 0)); return err }},
		{"Release of the last hold", func(ctx context.Context) error { _, err := sc.s.Release(ctx, req(sc.one, "w1", 0)); return err }},
		{"Release of every hold", func(ctx context.Context) error {
			rq := req(sc.r, "w1", 0)
			rq.All = true
			_, err := sc.s.Release(ctx, rq)
			return err
		}},
		{"ReleaseHandOff", func(ctx context.Context) error {
			_, _, err := sc.s.ReleaseHandOff(ctx, req(sc.one, "w1", 0), "c0ffee")
			return err
		}},
		{"ReleaseAll", func(ctx context.Context) error { _, err := sc.s.ReleaseAll(ctx, "w1", sc.ids.next()); return err }},
		{"ForceRelease", func(ctx context.Context) error { _, err := sc.s.ForceRelease(ctx, sc.r, sc.ids.next()); return err }},
	}
}

// checkNothingChanged runs each call against the scene and fails t unless
// it fails, wrapping want, with every key of the store as it was.
func checkNothingChanged(t *testing.T, b *backend, sc *leaseScene, calls []failingCall, want error) {
	t.Helper()
	ctx := t.Context()
	for _, c := range calls {
		before := snapshot(t, b, sc.s.Layout())
		err := c.call(ctx)
		if err == nil {
			t.Errorf("%s succeeded", c.name)
			continue
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", c.name, err, want)
		}
		if errors.Is(err, coordinator.ErrConflict) || errors.Is(err, coordinator.ErrNotHeld) {
			t.Errorf("%s: a refusal reported as a lease state: %v", c.name, err)
		}
		sameSnapshot(t, c.name, before, snapshot(t, b, sc.s.Layout()))
	}
}

// TestOutboxRefusalChangesNothing (issue 12.3): when the partition's
// stream refuses the event — a key of another type, or its id space
// exhausted — the call fails and every key is as it was. Before, the
// lease was written and the XADD failed after it: the caller got an
// error for a lease it held, with no event.
func TestOutboxRefusalChangesNothing(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		sc := newLeaseScene(t, b)
		ctx := t.Context()
		// a string where the stream should be
		must[int64](t)(b.client.Del(ctx, sc.events).Result())
		must[string](t)(b.client.Set(ctx, sc.events, "not a stream", 0).Result())
		checkNothingChanged(t, b, sc, sc.writes(), redisstore.ErrOutbox)
	})
	t.Run("exhausted", func(t *testing.T) {
		b := newRealBackend(t) // miniredis wraps the id around instead
		sc := newLeaseScene(t, b)
		ctx := t.Context()
		must[int64](t)(b.client.Del(ctx, sc.events).Result())
		must[string](t)(b.client.XAdd(ctx, &redis.XAddArgs{Stream: sc.events, ID: "18446744073709551615-18446744073709551615",
			Values: []string{"event", "by hand"}}).Result())
		checkNothingChanged(t, b, sc, sc.writes(), redisstore.ErrOutbox)
	})
	t.Run("out of memory", func(t *testing.T) {
		// the first write of a script is refused: the event (ErrOutbox),
		// or the fence of a free resource's acquisition
		b := newRealBackend(t)
		sc := newLeaseScene(t, b)
		ctx := t.Context()
		// every write Redis is asked for is refused (noeviction)
		must[string](t)(b.client.ConfigSet(ctx, "maxmemory", "1").Result())
		t.Cleanup(func() { b.client.ConfigSet(context.Background(), "maxmemory", "0") })
		calls := sc.writes()
		checkNothingChanged(t, b, sc, calls[:1], nil)
		checkNothingChanged(t, b, sc, calls[1:], redisstore.ErrOutbox)
		if _, err := sc.s.Acquire(ctx, request(sc.free, "w1", sc.ids.next(), time.Minute)); err == nil || !strings.Contains(err.Error(), "OOM") {
			t.Fatalf("acquire out of memory: %v, want Redis's OOM error", err)
		}
	})
}

// TestStreamAtTheLastMillisecond: after an entry written by hand at the
// largest millisecond part, Redis gives the next entries that part with
// a growing sequence: the scripts go on (the mirror reads such ids) until
// the id space is exhausted, then refuse with nothing changed.
func TestStreamAtTheLastMillisecond(t *testing.T) {
	b := newRealBackend(t)
	sc := newLeaseScene(t, b)
	ctx := t.Context()
	must[string](t)(b.client.XAdd(ctx, &redis.XAddArgs{Stream: sc.events, ID: "18446744073709551615-18446744073709551613",
		Values: []string{"event", "by hand"}}).Result())
	lease(t)(sc.s.Renew(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
	lease(t)(sc.s.Renew(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
	last := must[[]redis.XMessage](t)(b.client.XRevRangeN(ctx, sc.events, "+", "-", 1).Result())
	if len(last) != 1 || last[0].ID != "18446744073709551615-18446744073709551615" || last[0].Values["event"] != "renewed" {
		t.Fatalf("last entry %+v, want the second renewal at the last id", last)
	}
	checkNothingChanged(t, b, sc, sc.writes(), redisstore.ErrOutbox)
}

// TestCorruptLeaseChangesNothing (issue 12.3): a lease hash with a field
// that no script wrote (count "abc", token deleted, ...) or a lease key of
// another type makes every call on it fail with ErrCorrupt and nothing
// changed. Before, Renew of count "abc" applied its change and its event
// and then failed, and Release of a lease without token deleted it with
// no event.
func TestCorruptLeaseChangesNothing(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		for _, tc := range []struct {
			name    string
			corrupt func(ctx context.Context, c redis.UniversalClient, key string) error
		}{
			{"count abc", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "count", "abc").Err()
			}},
			{"count 0", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "count", "0").Err()
			}},
			{"token deleted", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HDel(ctx, key, "token").Err()
			}},
			{"token negative", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "token", "-5").Err()
			}},
			{"token beyond 2^63", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "token", "9223372036854775808").Err()
			}},
			{"expires_at a float", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "expires_at", "1.7e12").Err()
			}},
			{"acquired_at empty", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HSet(ctx, key, "acquired_at", "").Err()
			}},
			{"owner deleted", func(ctx context.Context, c redis.UniversalClient, key string) error {
				return c.HDel(ctx, key, "owner").Err()
			}},
			{"a list", func(ctx context.Context, c redis.UniversalClient, key string) error {
				if err := c.Del(ctx, key).Err(); err != nil {
					return err
				}
				return c.RPush(ctx, key, "w1").Err()
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sc := newLeaseScene(t, b)
				ctx := t.Context()
				key := sc.s.Layout().LeaseKey(sc.r)
				if err := tc.corrupt(ctx, b.client, key); err != nil {
					t.Fatal(err)
				}
				req := func(owner string, ttl time.Duration) coordinator.Request {
					return request(sc.r, owner, sc.ids.next(), ttl)
				}
				calls := []failingCall{
					{"re-entering Acquire", func(ctx context.Context) error { _, err := sc.s.Acquire(ctx, req("w1", time.Minute)); return err }},
					{"Acquire by another", func(ctx context.Context) error { _, err := sc.s.Acquire(ctx, req("w2", time.Minute)); return err }},
					{"queued Acquire by another", func(ctx context.Context) error {
						_, err := sc.s.AcquireQueued(ctx, req("w3", time.Minute), "beef", coordinator.Queueing{})
						return err
					}},
					{"Renew", func(ctx context.Context) error { _, err := sc.s.Renew(ctx, req("w1", time.Hour)); return err }},
					{"Renew by another", func(ctx context.Context) error { _, err := sc.s.Renew(ctx, req("w2", time.Hour)); return err }},
					{"Release", func(ctx context.Context) error { _, err := sc.s.Release(ctx, req("w1", 0)); return err }},
					{"Release by another", func(ctx context.Context) error { _, err := sc.s.Release(ctx, req("w2", 0)); return err }},
					{"Inspect", func(ctx context.Context) error { _, err := sc.s.Inspect(ctx, sc.r); return err }},
				}
				checkNothingChanged(t, b, sc, calls, redisstore.ErrCorrupt)

				// release --force removes it whatever it holds, with an event
				n := must[int64](t)(b.client.XLen(ctx, sc.events).Result())
				l, err := sc.s.ForceRelease(ctx, sc.r, "force-1")
				if err != nil || l.Count != 0 {
					t.Fatalf("ForceRelease of a corrupt lease: %+v, %v", l, err)
				}
				if ex := must[int64](t)(b.client.Exists(ctx, key).Result()); ex != 0 {
					t.Fatal("ForceRelease left the corrupt key")
				}
				evs := entries(t, b.client, sc.events)
				if int64(len(evs)) != n+1 || evs[len(evs)-1]["event"] != "forced" || evs[len(evs)-1]["id"] != "r" {
					t.Fatalf("events after ForceRelease: %v, want one more, forced", evs[n:])
				}
				if _, err := sc.s.Inspect(ctx, sc.r); !errors.Is(err, coordinator.ErrNotHeld) {
					t.Fatalf("Inspect after ForceRelease: %v", err)
				}
				// and the resource works again, with a greater token
				if l := lease(t)(sc.s.Acquire(ctx, req("w2", time.Minute))); l.Count != 1 {
					t.Fatalf("acquire after the forced release: %+v", l)
				}
			})
		}
	})
}

// TestFenceOutOfRangeChangesNothing (issue 12.4): a fence counter that is
// not a decimal integer from 0 to 2^63 - 2 stops new leases in its
// partition with ErrCorrupt naming the fence, and nothing changes. Before,
// 99999999999999999999 wrote the token -9223372036854775808.
func TestFenceOutOfRangeChangesNothing(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		for _, v := range []string{"99999999999999999999", "9223372036854775807", "18446744073709551616", "-5", "abc", "1.5", "1e15", "", " 12"} {
			t.Run(strconv.Quote(v), func(t *testing.T) {
				sc := newLeaseScene(t, b)
				ctx := t.Context()
				must[string](t)(b.client.Set(ctx, sc.fence, v, 0).Result())
				calls := []failingCall{{"Acquire of a free resource", func(ctx context.Context) error {
					_, err := sc.s.Acquire(ctx, request(sc.free, "w1", sc.ids.next(), time.Minute))
					if err != nil && !strings.Contains(err.Error(), sc.fence) {
						return fmt.Errorf("error %w does not name the fence", err)
					}
					return err
				}}}
				checkNothingChanged(t, b, sc, calls, redisstore.ErrCorrupt)
				// re-entries and renewals of live leases need no token
				lease(t)(sc.s.Acquire(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
				lease(t)(sc.s.Renew(ctx, request(sc.r, "w1", sc.ids.next(), time.Minute)))
			})
		}
		t.Run("a hash", func(t *testing.T) {
			sc := newLeaseScene(t, b)
			ctx := t.Context()
			must[int64](t)(b.client.Del(ctx, sc.fence).Result())
			must[int64](t)(b.client.HSet(ctx, sc.fence, "last", "1").Result())
			checkNothingChanged(t, b, sc, []failingCall{{"Acquire of a free resource", func(ctx context.Context) error {
				_, err := sc.s.Acquire(ctx, request(sc.free, "w1", sc.ids.next(), time.Minute))
				return err
			}}}, redisstore.ErrCorrupt)
		})
	})
}

// TestFenceExact (issue 12.4): tokens above 2^53 are computed exactly,
// each above the last, up to 2^63 - 1. Before, a fence of
// 9007199254740993 gave three acquisitions the same token
// 9007199254740992, below the fence.
func TestFenceExact(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		sc := newLeaseScene(t, b)
		ctx := t.Context()
		must[string](t)(b.client.Set(ctx, sc.fence, "9007199254740993", 0).Result())
		for i, want := range []uint64{9007199254740994, 9007199254740995, 9007199254740996} {
			r := coordinator.Resource{Type: "job", ID: strconv.Itoa(i)}
			l := lease(t)(sc.s.Acquire(ctx, request(r, "w1", sc.ids.next(), time.Minute)))
			if l.Token != want {
				t.Fatalf("acquisition %d: token %d, want %d", i, l.Token, want)
			}
			if got := must[string](t)(b.client.Get(ctx, sc.fence).Result()); got != strconv.FormatUint(want, 10)+"/1" {
				t.Fatalf("fence %s after token %d (1 partition)", got, want)
			}
			if got := must[string](t)(b.client.HGet(ctx, sc.s.Layout().LeaseKey(r), "token").Result()); got != strconv.FormatUint(want, 10) {
				t.Fatalf("lease token field %s, want %d", got, want)
			}
		}
		// leading zeros, and a carry across every digit
		for _, tc := range []struct {
			fence string
			want  uint64
		}{{"0009", 0}, {"999999999999999999", 1000000000000000000}, {"9223372036854775806", 9223372036854775807}} {
			fence, want := tc.fence, tc.want
			must[string](t)(b.client.Set(ctx, sc.fence, fence, 0).Result())
			r := coordinator.Resource{Type: "job", ID: "f" + fence}
			l := lease(t)(sc.s.Acquire(ctx, request(r, "w1", sc.ids.next(), time.Minute)))
			if want == 0 {
				// below the clock: the token is Redis time in µs
				if l.Token < uint64(time.Now().Add(-time.Hour).UnixMicro()) {
					t.Fatalf("fence %s: token %d, want Redis time in µs", fence, l.Token)
				}
				continue
			}
			if l.Token != want {
				t.Fatalf("fence %s: token %d, want %d", fence, l.Token, want)
			}
		}
		// the largest token issued, the counter is at its end: refused
		before := snapshot(t, b, sc.s.Layout())
		_, err := sc.s.Acquire(ctx, request(sc.free, "w1", sc.ids.next(), time.Minute))
		if !errors.Is(err, redisstore.ErrCorrupt) || !strings.Contains(err.Error(), "9223372036854775807") {
			t.Fatalf("acquire past the last token: %v, want ErrCorrupt naming the fence's value", err)
		}
		sameSnapshot(t, "acquire past the last token", before, snapshot(t, b, sc.s.Layout()))
	})
}

// TestAuxiliaryKeysOfAnotherType: an owner index, release memo or waiter
// queue key of another type (edited by hand) does not make a change fail
// halfway: the script reads it as absent and replaces it.
func TestAuxiliaryKeysOfAnotherType(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		sc := newLeaseScene(t, b)
		ctx := t.Context()
		l := sc.s.Layout()
		p := 0
		wrong := func(key string) {
			t.Helper()
			must[int64](t)(b.client.Del(ctx, key).Result())
			must[int64](t)(b.client.RPush(ctx, key, "x").Result())
		}
		// the owner index: acquire and release replace it
		wrong(l.OwnerKey(p, "w1"))
		lease(t)(sc.s.Acquire(ctx, request(sc.free, "w1", sc.ids.next(), time.Minute)))
		if m := must[[]string](t)(b.client.SMembers(ctx, l.OwnerKey(p, "w1")).Result()); !slices.Equal(slices.Sorted(slices.Values(m)), []string{"", "plan/free"}) {
			t.Fatalf("owner index after acquire %q", m)
		}
		wrong(l.OwnerKey(p, "w1"))
		lease(t)(sc.s.Release(ctx, request(sc.free, "w1", sc.ids.next(), 0)))
		if ex := must[int64](t)(b.client.Exists(ctx, l.OwnerKey(p, "w1")).Result()); ex != 0 {
			t.Fatal("the release left an owner index of another type")
		}
		// the release memo: replaced by the release's own
		wrong(l.RequestKey(sc.one, "rel-1"))
		one := lease(t)(sc.s.Release(ctx, request(sc.one, "w1", "rel-1", 0)))
		if again := lease(t)(sc.s.Release(ctx, request(sc.one, "w1", "rel-1", 0))); again.Token != one.Token || again.Count != 0 {
			t.Fatalf("retried release %+v, want %+v", again, one)
		}
		// the waiter queue: a waiter queues anew, a release passes over it
		q := l.QueueKey(sc.r)
		wrong(q)
		if _, err := acquireQueued(ctx, sc.s, sc.r, "w3", sc.ids.next(), "abc", false); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("queued acquire: %v", err)
		}
		if got := queueOf(t, b, sc.s, sc.r); !slices.Equal(got, []string{"abc"}) {
			t.Fatalf("queue %q, want [abc]", got)
		}
		wrong(q)
		lease(t)(sc.s.Release(ctx, request(sc.r, "w1", sc.ids.next(), 0)))
		lease(t)(sc.s.Release(ctx, request(sc.r, "w1", sc.ids.next(), 0)))
		if err := sc.s.Unqueue(ctx, sc.r, "abc"); err != nil {
			t.Fatalf("Unqueue over a queue of another type: %v", err)
		}
	})
}
