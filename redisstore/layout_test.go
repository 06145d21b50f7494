package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// keysUnder lists the keys of a layout's prefix with their types.
func keysUnder(t *testing.T, b *backend, layout redisstore.Layout) map[string]string {
	t.Helper()
	ctx := t.Context()
	out := map[string]string{}
	iter := b.client.Scan(ctx, 0, layout.KeyPattern(), 1000).Iterator()
	for iter.Next(ctx) {
		out[iter.Val()] = must[string](t)(b.client.Type(ctx, iter.Val()).Result())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeyLayout(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		pfx := s.Layout().Prefix()
		r := coordinator.Plan("42")
		p := int(crc32.ChecksumIEEE([]byte("plan/42")) % 16)
		for got, want := range map[string]string{
			s.Layout().LeaseKey(r):                 fmt.Sprintf("%s:{%d}:lock:plan:42", pfx, p),
			s.Layout().FenceKey(3):                 pfx + ":{3}:fence",
			s.Layout().StreamKey(3):                pfx + ":{3}:events",
			s.Layout().OwnerKey(3, "w 1/ü"):        pfx + ":{3}:owner:w 1/ü",
			s.Layout().ReleaseChannel(15):          pfx + ":{15}:released",
			s.Layout().ConfigKey():                 pfx + ":partitions",
			s.Layout().QueueKey(r):                 fmt.Sprintf("%s:{%d}:waiters:plan:42", pfx, p),
			s.Layout().RequestKey(r, "r-1"):        fmt.Sprintf("%s:{%d}:req:plan:42/r-1", pfx, p),
			s.Layout().WaiterChannel(15, "c0ffee"): pfx + ":{15}:released:c0ffee",
			s.Layout().KeyPattern():                pfx + ":*",
			s.Layout().LeaseKeyPattern(""):         pfx + ":{*}:lock:*",
			s.Layout().LeaseKeyPattern("plan"):     pfx + ":{*}:lock:plan:*",
		} {
			if got != want {
				t.Errorf("key %q, want %q", got, want)
			}
		}
		if s.Layout().Partition(r) != p {
			t.Fatalf("Partition = %d, want crc32 mod 16 = %d", s.Layout().Partition(r), p)
		}

		l := lease(t)(s.Acquire(ctx, request(r, "w1", "a1", 90*time.Second)))
		key := s.Layout().LeaseKey(r)
		h := must[map[string]string](t)(b.client.HGetAll(ctx, key).Result())
		want := map[string]string{"owner": "w1", "count": "1", "token": strconv.FormatUint(l.Token, 10),
			"acquired_at": ms(l.AcquiredAt), "expires_at": ms(l.ExpiresAt)}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("HGETALL %s: %s = %q, want %q", key, k, h[k], v)
			}
		}
		// the only other field is the lease's memory of request ids
		if extra := slices.DeleteFunc(slices.Sorted(maps.Keys(h)), func(k string) bool { _, ok := want[k]; return ok }); !slices.Equal(extra, []string{"req"}) {
			t.Errorf("HGETALL %s has extra fields %v, want only req", key, extra)
		}
		if d := l.ExpiresAt.Sub(l.AcquiredAt); d != 90*time.Second {
			t.Errorf("expires_at - acquired_at = %v, want 90s", d)
		}
		if pttl := must[time.Duration](t)(b.client.PTTL(ctx, key).Result()); pttl <= 85*time.Second || pttl > 90*time.Second {
			t.Errorf("PTTL %s = %v, want about 90s", key, pttl)
		}
		wantKeys := map[string]string{key: "hash", s.Layout().FenceKey(p): "string", s.Layout().StreamKey(p): "stream",
			s.Layout().OwnerKey(p, "w1"): "set", s.Layout().ConfigKey(): "string", s.Layout().ExpiryKey(p): "zset"}
		if got := keysUnder(t, b, s.Layout()); !maps.Equal(got, wantKeys) {
			t.Errorf("keys after acquire: %v, want %v", got, wantKeys)
		}
		if f := must[string](t)(b.client.Get(ctx, s.Layout().FenceKey(p)).Result()); f != strconv.FormatUint(l.Token, 10)+"/16" {
			t.Errorf("fence = %s, want the last token %d and the partition count 16", f, l.Token)
		}
		// the index keeps an empty placeholder member, so that an owner
		// taking one lease at a time does not create it again each time
		if m := must[[]string](t)(b.client.SMembers(ctx, s.Layout().OwnerKey(p, "w1")).Result()); !slices.Equal(slices.Sorted(slices.Values(m)), []string{"", "plan/42"}) {
			t.Errorf("owner index = %q, want [\"\" plan/42]", m)
		}

		lease(t)(s.Acquire(ctx, request(r, "w1", "a2", 90*time.Second)))
		if c := must[string](t)(b.client.HGet(ctx, key, "count").Result()); c != "2" {
			t.Errorf("count after re-entry = %s", c)
		}
		lease(t)(s.Release(ctx, request(r, "w1", "r1", 0)))
		lease(t)(s.Release(ctx, request(r, "w1", "r2", 0)))
		// released: the lease is gone, the index lists only its placeholder
		// until its TTL; the release is remembered for the retry window
		memo := pfx + fmt.Sprintf(":{%d}:req:plan:42/r2", p)
		if got := s.Layout().RequestKey(r, "r2"); got != memo {
			t.Errorf("RequestKey = %q, want %q", got, memo)
		}
		wantKeys = map[string]string{s.Layout().FenceKey(p): "string", s.Layout().StreamKey(p): "stream", s.Layout().ConfigKey(): "string", memo: "string",
			s.Layout().OwnerKey(p, "w1"): "set"}
		if got := keysUnder(t, b, s.Layout()); !maps.Equal(got, wantKeys) {
			t.Errorf("keys after release: %v, want %v", got, wantKeys)
		}
		if pttl := must[time.Duration](t)(b.client.PTTL(ctx, memo).Result()); pttl <= 0 || pttl > redisstore.DefaultRetryWindow {
			t.Errorf("PTTL %s = %v, want at most the retry window %v", memo, pttl, redisstore.DefaultRetryWindow)
		}
		if m := must[[]string](t)(b.client.SMembers(ctx, s.Layout().OwnerKey(p, "w1")).Result()); !slices.Equal(m, []string{""}) {
			t.Errorf("owner index after release = %q, want only the placeholder", m)
		}
		if v := must[string](t)(b.client.Get(ctx, memo).Result()); !strings.HasPrefix(v, strconv.FormatUint(l.Token, 10)+" "+ms(l.AcquiredAt)+" ") || !strings.HasSuffix(v, " w1") {
			t.Errorf("memo %s = %q, want token, acquired_at, expires_at and owner", memo, v)
		}
		if _, err := s.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) || !strings.Contains(err.Error(), "plan/42") {
			t.Errorf("Inspect of a free resource: %v", err)
		}
	})
}

func TestParseKey(t *testing.T) {
	s := redisstore.New(nil, redisstore.WithPrefix("app.locks"), redisstore.WithPartitions(8))
	for _, r := range []coordinator.Resource{coordinator.Plan("42"), {Type: "job", ID: "a:b:c/{x}"}, {Type: "x-1_y", ID: "ünï cödé"}} {
		got, p, err := s.Layout().ParseLeaseKey(s.Layout().LeaseKey(r))
		if err != nil || got != r || p != s.Layout().Partition(r) {
			t.Errorf("ParseKey(Key(%v)) = %v, %d, %v", r, got, p, err)
		}
	}
	r := coordinator.Plan("42")
	p := s.Layout().Partition(r)
	for _, key := range []string{
		"", "other:{0}:lock:plan:42", "app.locks:{" + strconv.Itoa(p) + "}:fence",
		"app.locks:{x}:lock:plan:42", "app.locks:{-1}:lock:plan:42", "app.locks:{8}:lock:plan:42",
		"app.locks:{0" + strconv.Itoa(p) + "}:lock:plan:42", "app.locks:{+" + strconv.Itoa(p) + "}:lock:plan:42",
		"app.locks:{" + strconv.Itoa((p+1)%8) + "}:lock:plan:42",
		"app.locks:{" + strconv.Itoa(p) + "}:lock:plan", "app.locks:{" + strconv.Itoa(p) + "}:lock:Plan:42",
	} {
		if got, _, err := s.Layout().ParseLeaseKey(key); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("ParseKey(%q) = %v, %v; want ErrInvalid", key, got, err)
		}
	}
	var ve *coordinator.ValidationError
	if _, _, err := s.Layout().ParseLeaseKey("app.locks:{9}:lock:plan:42"); !errors.As(err, &ve) || ve.Field != "lease key" || !strings.Contains(ve.Rule, "0 to 7") {
		t.Errorf("ParseKey with partition 9 of 8: %v", err)
	}
}

// checkOwnerIndex checks, for every live lease of the owners, that the
// owner's index of the partition lists it and lives at least as long.
func checkOwnerIndex(t *testing.T, b *backend, s *redisstore.Store, owners []string, resources []coordinator.Resource, step string) {
	t.Helper()
	ctx := context.Background()
	for _, r := range resources {
		owner, err := b.client.HGet(ctx, s.Layout().LeaseKey(r), "owner").Result()
		if err != nil {
			continue // free
		}
		if !slices.Contains(owners, owner) {
			t.Fatalf("%s: unknown owner %q", step, owner)
		}
		idx := s.Layout().OwnerKey(s.Layout().Partition(r), owner)
		if !must[bool](t)(b.client.SIsMember(ctx, idx, r.String()).Result()) {
			t.Fatalf("%s: %s of %s is not in %s", step, r, owner, idx)
		}
		lockTTL := must[time.Duration](t)(b.client.PTTL(ctx, s.Layout().LeaseKey(r)).Result())
		idxTTL := must[time.Duration](t)(b.client.PTTL(ctx, idx).Result())
		if idxTTL < lockTTL {
			t.Fatalf("%s: %s lives %v, less than %s of %s (%v)", step, idx, idxTTL, r, owner, lockTTL)
		}
	}
}

func TestOwnerIndexTTL(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client, redisstore.WithPartitions(1))
	a, bb, c := coordinator.Plan("a"), coordinator.Plan("b"), coordinator.Plan("c")
	all := []coordinator.Resource{a, bb, c}
	idx := s.Layout().OwnerKey(0, "w1")
	var ids reqIDs
	for _, step := range []struct {
		name string
		do   func()
		min  time.Duration // the index must live at least this long
	}{
		{"acquire a 10s", func() { lease(t)(s.Acquire(ctx, request(a, "w1", ids.next(), 10*time.Second))) }, 10 * time.Second},
		{"acquire b 120s", func() { lease(t)(s.Acquire(ctx, request(bb, "w1", ids.next(), 120*time.Second))) }, 120 * time.Second},
		{"acquire c 30s", func() { lease(t)(s.Acquire(ctx, request(c, "w1", ids.next(), 30*time.Second))) }, 120 * time.Second},
		{"renew a 300s", func() { lease(t)(s.Renew(ctx, request(a, "w1", ids.next(), 300*time.Second))) }, 300 * time.Second},
		{"re-enter b 600s", func() { lease(t)(s.Acquire(ctx, request(bb, "w1", ids.next(), 600*time.Second))) }, 600 * time.Second},
		{"renew b 5s", func() { lease(t)(s.Renew(ctx, request(bb, "w1", ids.next(), 5*time.Second))) }, 300 * time.Second},
		{"release c", func() { lease(t)(s.Release(ctx, request(c, "w1", ids.next(), 0))) }, 300 * time.Second},
	} {
		step.do()
		if got := b.mini.TTL(idx); got < step.min {
			t.Fatalf("after %s: owner index TTL %v, want at least %v", step.name, got, step.min)
		}
		checkOwnerIndex(t, b, s, []string{"w1"}, all, step.name)
	}
}

// TestOwnerIndexRandom runs random operations of several owners on a few
// resources, with time moving on, and checks the index after each.
func TestOwnerIndexRandom(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client, redisstore.WithPartitions(2))
	owners := []string{"w1", "w2", "w3"}
	var rs []coordinator.Resource
	for i := range 6 {
		rs = append(rs, coordinator.Resource{Type: "job", ID: strconv.Itoa(i)})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ids reqIDs
	for i := range 400 {
		r, o := rs[rng.IntN(len(rs))], owners[rng.IntN(len(owners))]
		ttl := time.Duration(1+rng.IntN(60)) * time.Second
		var step string
		switch op := rng.IntN(10); {
		case op < 4:
			step = "acquire"
			_, _ = s.Acquire(ctx, request(r, o, ids.next(), ttl))
		case op < 6:
			step = "renew"
			_, _ = s.Renew(ctx, request(r, o, ids.next(), ttl))
		case op < 8:
			step = "release"
			_, _ = s.Release(ctx, request(r, o, ids.next(), 0))
		case op < 9:
			step = "fast-forward"
			b.mini.FastForward(time.Duration(rng.IntN(30_000)) * time.Millisecond)
		default:
			step = "release all"
			if _, err := s.ReleaseAll(ctx, o, ids.next()); err != nil {
				t.Fatal(err)
			}
		}
		checkOwnerIndex(t, b, s, owners, rs, fmt.Sprintf("step %d (%s %s by %s, ttl %v)", i, step, r, o, ttl))
	}
}

func TestReleaseAllDropsStaleMembers(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client)
	var ids reqIDs
	live, expired, taken := coordinator.Plan("live"), coordinator.Plan("expired"), coordinator.Plan("taken")
	lease(t)(s.Acquire(ctx, request(live, "w1", ids.next(), time.Hour)))
	lease(t)(s.Acquire(ctx, request(live, "w1", ids.next(), time.Hour)))
	lease(t)(s.Acquire(ctx, request(expired, "w1", ids.next(), time.Second)))
	lease(t)(s.Acquire(ctx, request(taken, "w1", ids.next(), time.Second)))
	b.mini.FastForward(2 * time.Second)
	lease(t)(s.Acquire(ctx, request(taken, "w2", ids.next(), time.Hour)))
	// members this version never writes: not a resource, and a resource
	// filed under the wrong partition
	wrong := (s.Layout().Partition(live) + 1) % s.Layout().Partitions()
	if _, err := b.mini.SetAdd(s.Layout().OwnerKey(wrong, "w1"), "not a resource", live.String()); err != nil {
		t.Fatal(err)
	}
	b.mini.SetTTL(s.Layout().OwnerKey(wrong, "w1"), time.Hour)

	n, err := s.ReleaseAll(ctx, "w1", "all-1")
	if err != nil || n != 1 {
		t.Fatalf("ReleaseAll = %d, %v; want 1 (the live lease, both holds)", n, err)
	}
	for p := range s.Layout().Partitions() {
		if k := s.Layout().OwnerKey(p, "w1"); b.mini.Exists(k) {
			if m, _ := b.mini.Members(k); !slices.Equal(m, []string{""}) {
				t.Errorf("%s still lists %q", k, m)
			}
		}
	}
	if got := lease(t)(s.Inspect(ctx, taken)); got.Owner != "w2" {
		t.Fatalf("ReleaseAll of w1 touched w2's lease: %+v", got)
	}
	if m, _ := b.mini.Members(s.Layout().OwnerKey(s.Layout().Partition(taken), "w2")); !slices.Equal(m, []string{"", taken.String()}) {
		t.Fatalf("w2's index = %v", m)
	}
	if _, err := s.ReleaseAll(ctx, "", "all-2"); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("ReleaseAll of an empty owner: %v", err)
	}
}

func TestRetryWindow(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client, redisstore.WithRetryWindow(2*time.Second))
	r := coordinator.Plan("retry")
	a := lease(t)(s.Acquire(ctx, request(r, "w1", "a1", time.Hour)))
	lease(t)(s.Release(ctx, request(r, "w1", "r1", 0)))
	memo := fmt.Sprintf("%s:{%d}:req:plan:retry/r1", s.Layout().Prefix(), s.Layout().Partition(r))
	if got := b.mini.TTL(memo); got != 2*time.Second {
		t.Fatalf("memo TTL %v, want the 2s retry window", got)
	}
	b.mini.FastForward(1999 * time.Millisecond)
	if l := lease(t)(s.Release(ctx, request(r, "w1", "r1", 0))); l.Token != a.Token || l.Owner != "w1" || l.Count != 0 {
		t.Fatalf("retry within the window = %+v, want the first reply", l)
	}
	b.mini.FastForward(2 * time.Millisecond)
	if _, err := s.Release(ctx, request(r, "w1", "r1", 0)); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Fatalf("retry after the window: %v, want ErrNotHeld", err)
	}
}

func TestSubMillisecondTTL(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client)
	// below Redis's resolution: refused as the coordinator refuses it
	// (issue 12.5), nothing written
	for i, ttl := range []time.Duration{0, 500 * time.Microsecond, -time.Second} {
		r := coordinator.Resource{Type: "job", ID: "short" + strconv.Itoa(i)}
		var ve *coordinator.ValidationError
		if _, err := s.Acquire(ctx, request(r, "w1", "a", ttl)); !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "TTL" {
			t.Errorf("store TTL %v: %v, want ErrInvalid naming the TTL", ttl, err)
		}
		if b.mini.Exists(s.Layout().LeaseKey(r)) {
			t.Errorf("store TTL %v: a lease was written", ttl)
		}
	}
	// from 1ms, whole milliseconds: Redis's resolution, never 0
	for i, ttl := range []time.Duration{time.Millisecond, 1999 * time.Microsecond} {
		r := coordinator.Resource{Type: "job", ID: strconv.Itoa(i)}
		l := lease(t)(s.Acquire(ctx, request(r, "w1", "a", ttl)))
		if d := l.ExpiresAt.Sub(l.AcquiredAt); d != time.Millisecond {
			t.Errorf("store TTL %v: lease of %v, want 1ms (Redis's resolution, never 0)", ttl, d)
		}
		if got := b.mini.TTL(s.Layout().LeaseKey(r)); got != time.Millisecond {
			t.Errorf("store TTL %v: PTTL %v, want 1ms", ttl, got)
		}
	}
}

// TestNewLayout: a layout is validated when it is built, naming the field
// and its rule, and a store's layout is the one of its options.
func TestNewLayout(t *testing.T) {
	for _, tc := range []struct {
		prefix     string
		partitions int
		field      string
	}{
		{"", 16, "prefix"},
		{"app{1}", 16, "prefix"},
		{"my app", 16, "prefix"},
		{"lockcoörd", 16, "prefix"},
		{strings.Repeat("p", 65), 16, "prefix"},
		{"ok", 0, "partitions"},
		{"ok", -1, "partitions"},
		{"ok", redisstore.MaxPartitions + 1, "partitions"},
		{"bad{", 0, "prefix"},
	} {
		_, err := redisstore.NewLayout(tc.prefix, tc.partitions)
		var ve *coordinator.ValidationError
		if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field || ve.Rule == "" {
			t.Errorf("NewLayout(%q, %d) = %v, want a *ValidationError naming %s and its rule", tc.prefix, tc.partitions, err, tc.field)
		}
	}
	for _, tc := range []struct {
		prefix     string
		partitions int
	}{
		{"Az09_.:-" + strings.Repeat("x", 56), 1},
		{"p", redisstore.MaxPartitions},
		{redisstore.DefaultPrefix, redisstore.DefaultPartitions},
	} {
		l, err := redisstore.NewLayout(tc.prefix, tc.partitions)
		if err != nil || l.Prefix() != tc.prefix || l.Partitions() != tc.partitions {
			t.Errorf("NewLayout(%q, %d) = %+v, %v", tc.prefix, tc.partitions, l, err)
		}
		s := redisstore.New(nil, redisstore.WithPrefix(tc.prefix), redisstore.WithPartitions(tc.partitions))
		if s.Layout() != l {
			t.Errorf("store layout %+v, want %+v", s.Layout(), l)
		}
	}
	// a store whose prefix or partition option is invalid keeps the
	// defaults in its layout (every call fails: TestOptionValidation)
	def := must[redisstore.Layout](t)(redisstore.NewLayout(redisstore.DefaultPrefix, redisstore.DefaultPartitions))
	if got := redisstore.New(nil, redisstore.WithPrefix("a b"), redisstore.WithPartitions(0)).Layout(); got != def {
		t.Errorf("layout of a misconfigured store %+v, want the defaults %+v", got, def)
	}
}
