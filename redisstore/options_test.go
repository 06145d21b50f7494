package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// everyCall runs every method of the store that can fail, by name.
func everyCall(ctx context.Context, s *redisstore.Store) map[string]error {
	r := coordinator.Plan("1")
	req := request(r, "w1", "id-1", time.Minute)
	out := map[string]error{}
	_, out["Acquire"] = s.Acquire(ctx, req)
	_, out["Renew"] = s.Renew(ctx, req)
	_, out["Release"] = s.Release(ctx, req)
	_, out["Inspect"] = s.Inspect(ctx, r)
	_, out["ReleaseAll"] = s.ReleaseAll(ctx, "w1", "id-2")
	_, out["ForceRelease"] = s.ForceRelease(ctx, r, "id-3")
	out["CheckPartitions"] = s.CheckPartitions(ctx)
	_, out["AcquireAll"] = s.AcquireAll(ctx, []coordinator.Request{req, request(coordinator.Plan("2"), "w1", "id-1", time.Minute)})
	out["Unqueue"] = s.Unqueue(ctx, r, "waiter-1")
	_, _, out["ForcedBy"] = s.ForcedBy(ctx, r, 1)
	sub, err := s.Releases(ctx)
	if err == nil {
		_ = sub.Close()
	}
	out["Releases"] = err
	return out
}

func TestOptionValidation(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	cases := []struct {
		name  string
		nilC  bool
		opts  []redisstore.Option
		field string
	}{
		{"nil client", true, nil, "client"},
		{"prefix with a brace", false, []redisstore.Option{redisstore.WithPrefix("app{1}")}, "WithPrefix"},
		{"prefix with a space", false, []redisstore.Option{redisstore.WithPrefix("my app")}, "WithPrefix"},
		{"prefix not ASCII", false, []redisstore.Option{redisstore.WithPrefix("lockcoörd")}, "WithPrefix"},
		{"empty prefix", false, []redisstore.Option{redisstore.WithPrefix("")}, "WithPrefix"},
		{"prefix of 65", false, []redisstore.Option{redisstore.WithPrefix(strings.Repeat("p", 65))}, "WithPrefix"},
		{"zero partitions", false, []redisstore.Option{redisstore.WithPartitions(0)}, "WithPartitions"},
		{"negative partitions", false, []redisstore.Option{redisstore.WithPartitions(-1)}, "WithPartitions"},
		{"too many partitions", false, []redisstore.Option{redisstore.WithPartitions(redisstore.MaxPartitions + 1)}, "WithPartitions"},
		{"zero stream cap", false, []redisstore.Option{redisstore.WithStreamMaxLen(0)}, "WithStreamMaxLen"},
		{"negative stream cap", false, []redisstore.Option{redisstore.WithStreamMaxLen(-10)}, "WithStreamMaxLen"},
		{"zero retry window", false, []redisstore.Option{redisstore.WithRetryWindow(0)}, "WithRetryWindow"},
		{"sub-ms retry window", false, []redisstore.Option{redisstore.WithRetryWindow(time.Microsecond)}, "WithRetryWindow"},
		{"negative retry window", false, []redisstore.Option{redisstore.WithRetryWindow(-time.Second)}, "WithRetryWindow"},
		{"first bad option wins", false, []redisstore.Option{redisstore.WithPartitions(0), redisstore.WithPrefix("")}, "WithPartitions"},
		{"bad after good", false, []redisstore.Option{nil, redisstore.WithPrefix("ok"), redisstore.WithStreamMaxLen(0)}, "WithStreamMaxLen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c redis.UniversalClient = b.client
			if tc.nilC {
				c = nil
			}
			before := b.mini.CommandCount()
			s := redisstore.New(c, tc.opts...)
			for call, err := range everyCall(ctx, s) {
				var ve *coordinator.ValidationError
				if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field {
					t.Errorf("%s: %v, want ErrInvalid naming %s", call, err, tc.field)
					continue
				}
				if ve.Rule == "" || !strings.Contains(err.Error(), tc.field) {
					t.Errorf("%s: message %q does not name %s and its rule", call, err, tc.field)
				}
			}
			if n := b.mini.CommandCount() - before; n != 0 {
				t.Errorf("a misconfigured store sent %d commands to Redis", n)
			}
		})
	}
}

func TestOptionBoundaries(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	for name, opts := range map[string][]redisstore.Option{
		"prefix of 64, every allowed character": {redisstore.WithPrefix("Az09_.:-" + strings.Repeat("x", 56))},
		"one-character prefix":                  {redisstore.WithPrefix("p")},
		"one partition":                         {redisstore.WithPartitions(1)},
		"most partitions":                       {redisstore.WithPrefix("many"), redisstore.WithPartitions(redisstore.MaxPartitions)},
		"stream cap of one":                     {redisstore.WithPrefix("one"), redisstore.WithStreamMaxLen(1)},
		"retry window of 1ms":                   {redisstore.WithPrefix("rw"), redisstore.WithRetryWindow(time.Millisecond)},
	} {
		t.Run(name, func(t *testing.T) {
			b.mini.FlushAll()
			s := redisstore.New(b.client, opts...)
			r := coordinator.Resource{Type: "job", ID: name}
			l := lease(t)(s.Acquire(ctx, request(r, "w1", "a", time.Minute)))
			if !strings.HasPrefix(s.Layout().LeaseKey(r), s.Layout().Prefix()+":{") || !b.mini.Exists(s.Layout().LeaseKey(r)) {
				t.Fatalf("no lease key %s", s.Layout().LeaseKey(r))
			}
			if p := s.Layout().Partition(r); p < 0 || p >= s.Layout().Partitions() {
				t.Fatalf("partition %d out of [0, %d)", p, s.Layout().Partitions())
			}
			if n, err := s.ReleaseAll(ctx, "w1", "all"); err != nil || n != 1 {
				t.Fatalf("ReleaseAll = %d, %v", n, err)
			}
			_ = l
		})
	}
	s := redisstore.New(b.client)
	if s.Layout().Prefix() != redisstore.DefaultPrefix || s.Layout().Partitions() != redisstore.DefaultPartitions || !s.OutboxForTest() || s.Client() != b.client {
		t.Fatalf("defaults: prefix %q, %d partitions, outbox %v", s.Layout().Prefix(), s.Layout().Partitions(), s.OutboxForTest())
	}
}

func TestPartitionAgreement(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		first := b.newStore(t) // 16 partitions, the default
		prefix := first.Layout().Prefix()
		r := coordinator.Plan("shared")
		lease(t)(first.Acquire(ctx, request(r, "w1", "a", time.Minute)))
		if got := must[string](t)(b.client.Get(ctx, first.Layout().ConfigKey()).Result()); got != "16" {
			t.Fatalf("%s = %q, want 16", first.Layout().ConfigKey(), got)
		}
		if want := prefix + ":partitions"; first.Layout().ConfigKey() != want {
			t.Fatalf("ConfigKey = %q, want %q", first.Layout().ConfigKey(), want)
		}

		other := redisstore.New(b.client, redisstore.WithPrefix(prefix), redisstore.WithPartitions(8))
		for call, err := range everyCall(ctx, other) {
			if !errors.Is(err, redisstore.ErrPartitionMismatch) {
				t.Errorf("%s with 8 partitions on a 16-partition prefix: %v, want ErrPartitionMismatch", call, err)
				continue
			}
			for _, part := range []string{prefix, "16", "8", other.Layout().ConfigKey()} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%s: message %q does not mention %q", call, err, part)
				}
			}
		}
		if got := lease(t)(first.Inspect(ctx, r)); got.Owner != "w1" || got.Count != 1 {
			t.Fatalf("the refused store changed the lease: %+v", got)
		}

		same := redisstore.New(b.client, redisstore.WithPrefix(prefix), redisstore.WithPartitions(16))
		if got := lease(t)(same.Inspect(ctx, r)); got.Owner != "w1" {
			t.Fatalf("a store with the same count does not see the lease: %+v", got)
		}
		if _, err := same.Acquire(ctx, request(r, "w2", "b", time.Minute)); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("second store: %v, want a conflict with the first", err)
		}

		// another prefix records its own count
		eight := b.newStore(t, redisstore.WithPartitions(8))
		lease(t)(eight.Acquire(ctx, request(r, "w2", "c", time.Minute)))
		if err := eight.CheckPartitions(ctx); err != nil {
			t.Fatal(err)
		}
		if got := must[string](t)(b.client.Get(ctx, eight.Layout().ConfigKey()).Result()); got != "8" {
			t.Fatalf("%s = %q, want 8", eight.Layout().ConfigKey(), got)
		}

		// a corrupt record is an error, not a mismatch nor a panic
		if err := b.client.Set(ctx, eight.Layout().ConfigKey(), "sixteen", 0).Err(); err != nil {
			t.Fatal(err)
		}
		late := redisstore.New(b.client, redisstore.WithPrefix(eight.Layout().Prefix()), redisstore.WithPartitions(8))
		_, err := late.Acquire(ctx, request(r, "w2", "d", time.Minute))
		if err == nil || errors.Is(err, redisstore.ErrPartitionMismatch) || !strings.Contains(err.Error(), eight.Layout().ConfigKey()) {
			t.Fatalf("corrupt partition record: %v, want an error naming %s", err, eight.Layout().ConfigKey())
		}
	})
}

// TestWithAutoPipeline: the option needs a *redis.Client or a
// *redis.ClusterClient that is open; on one, concurrent calls through the
// AutoPipeliner each get their own reply.
func TestWithAutoPipeline(t *testing.T) {
	b := newMiniBackend(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": b.mini.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	closed := redis.NewClient(&redis.Options{Addr: b.mini.Addr()})
	_ = closed.Close()
	for name, tc := range map[string]struct {
		c    redis.UniversalClient
		want func(error) bool
	}{
		"ring": {ring, func(err error) bool {
			var ve *coordinator.ValidationError
			return errors.As(err, &ve) && ve.Field == "WithAutoPipeline" && errors.Is(err, coordinator.ErrInvalid)
		}},
		"closed client": {closed, func(err error) bool { return errors.Is(err, redis.ErrClosed) }},
	} {
		s := redisstore.New(tc.c, redisstore.WithAutoPipeline())
		if _, err := s.Acquire(t.Context(), request(coordinator.Plan("1"), "w1", "id-1", time.Minute)); !tc.want(err) {
			t.Errorf("%s: Acquire = %v, want the option's error", name, err)
		}
		if s.PipelinedForTest() {
			t.Errorf("%s: pipelined", name)
		}
	}

	s := redisstore.New(b.client, redisstore.WithAutoPipeline())
	if !s.PipelinedForTest() {
		t.Fatal("WithAutoPipeline on a *redis.Client: not pipelined")
	}
	ctx := t.Context()
	errs := make(chan error, 32)
	for g := range 32 {
		go func() {
			owner := "w" + strconv.Itoa(g)
			r := coordinator.Plan(owner)
			var err error
			for i := range 20 {
				id := owner + "-" + strconv.Itoa(i)
				var l coordinator.Lease
				if l, err = s.Acquire(ctx, request(r, owner, id+"a", time.Minute)); err != nil || l.Owner != owner || l.Count != 1 {
					err = fmt.Errorf("acquire %s: %+v, %w", r, l, err)
					break
				}
				if l, err = s.Release(ctx, request(r, owner, id+"r", 0)); err != nil || l.Owner != owner {
					err = fmt.Errorf("release %s: %+v, %w", r, l, err)
					break
				}
			}
			errs <- err
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
