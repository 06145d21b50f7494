package redisstore_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// resourceIn returns a plan whose partition is p in layout l.
func resourceIn(t *testing.T, l redisstore.Layout, p int, not ...coordinator.Resource) coordinator.Resource {
	t.Helper()
	for i := range 100000 {
		r := coordinator.Plan("r" + strconv.Itoa(i))
		if l.Partition(r) == p && !contains(not, r) {
			return r
		}
	}
	t.Fatalf("no resource in partition %d", p)
	return coordinator.Resource{}
}

func contains(rs []coordinator.Resource, r coordinator.Resource) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// wantMismatch checks that err is a partition count mismatch naming both
// counts.
func wantMismatch(t *testing.T, what string, err error, counts ...int) {
	t.Helper()
	if !errors.Is(err, redisstore.ErrPartitionMismatch) {
		t.Fatalf("%s: %v, want ErrPartitionMismatch", what, err)
	}
	for _, n := range counts {
		if !strings.Contains(err.Error(), strconv.Itoa(n)) {
			t.Errorf("%s: %q does not name the count %d", what, err, n)
		}
	}
}

// TestPartitionCountLostThenAnotherCount: issue 12 item 2. The recorded
// count <prefix>:partitions is evicted or deleted while a 16-partition
// store holds plan/777; a store with 8 partitions then starts. Before the
// fences carried the count, it recorded 8 and took plan/777 under its own
// key: two holders at once. Now the fences' markers give the count away.
func TestPartitionCountLostThenAnotherCount(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		sixteen := b.newStore(t)
		l16 := sixteen.Layout()
		r := coordinator.Plan("777")
		lease(t)(sixteen.Acquire(ctx, request(r, "w16", "a", time.Hour)))
		// a lease in each partition, as a busy prefix has
		for p := range l16.Partitions() {
			lease(t)(sixteen.Acquire(ctx, request(resourceIn(t, l16, p, r), "w16", "p"+strconv.Itoa(p), time.Hour)))
		}
		must[int64](t)(b.client.Del(ctx, l16.ConfigKey()).Result())

		eight := redisstore.New(b.client, redisstore.WithPrefix(l16.Prefix()), redisstore.WithPartitions(8))
		_, err := eight.Acquire(ctx, request(r, "w8", "b", time.Hour))
		wantMismatch(t, "8-partition store after the count was lost", err, 16, 8)
		l8 := eight.Layout()
		if n := must[int64](t)(b.client.Exists(ctx, l8.LeaseKey(r), l8.ConfigKey()).Result()); n != 0 && l8.LeaseKey(r) != l16.LeaseKey(r) {
			t.Fatalf("the refused store wrote %d of its lease key and the count", n)
		}
		if err := eight.CheckPartitions(ctx); err == nil {
			t.Fatal("CheckPartitions of the 8-partition store: nil")
		}
		// the 16-partition store records its count again and goes on
		lease(t)(redisstore.New(b.client, redisstore.WithPrefix(l16.Prefix())).Acquire(ctx, request(r, "w16", "a2", time.Hour)))
		rep := must[redisstore.PartitionReport](t)(sixteen.ReadPartitions(ctx))
		if rep.Recorded != 16 || len(rep.Marks) != 16 || rep.Disagreement(l16, 16) != nil {
			t.Fatalf("ReadPartitions = %+v", rep)
		}
		wantMismatch(t, "Disagreement with 8", rep.Disagreement(l16, 8), 16, 8)
	})
}

// TestPartitionCountLostOnRestart: Redis restarts without persistence
// (every key lost) while a 16-partition store runs, having checked the
// count; an 8-partition store starts first and records 8. The old store
// must not take a resource under its key: its fresh acquisitions find a
// fence marked 8, or one without a marker, which makes it check the count
// again.
func TestPartitionCountLostOnRestart(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		sixteen := b.newStore(t)
		l16 := sixteen.Layout()
		r := coordinator.Plan("777")
		lease(t)(sixteen.Acquire(ctx, request(r, "w16", "a", time.Hour)))
		lease(t)(sixteen.Release(ctx, request(r, "w16", "a2", 0)))
		restart(t, b)

		eight := redisstore.New(b.client, redisstore.WithPrefix(l16.Prefix()), redisstore.WithPartitions(8))
		l8 := eight.Layout()
		held8 := lease(t)(eight.Acquire(ctx, request(r, "w8", "b", time.Hour)))
		// a resource of each kind for the old store: its partition's fence
		// marked 8 by the new store, or not marked at all
		marked := resourceIn(t, l16, l8.Partition(r), r)
		if l16.Partition(marked) >= 8 {
			t.Fatalf("partition %d of 16 has no fence of the 8-partition layout", l16.Partition(marked))
		}
		unmarkedP := 8 + (l8.Partition(r)+1)%8
		// the old store checked the count before the restart: acquire.lua
		// meets the fence marked 8 first
		_, err := sixteen.Acquire(ctx, request(marked, "w16", "c-"+marked.ID, time.Hour))
		wantMismatch(t, "16-partition store on a fence marked 8", err, 16, 8)
		if !strings.Contains(err.Error(), `is marked "8"`) {
			t.Fatalf("not refused by the fence's marker: %v", err)
		}
		cases := []coordinator.Resource{r, marked, resourceIn(t, l16, unmarkedP)}
		for _, res := range cases {
			_, err := sixteen.Acquire(ctx, request(res, "w16", "c-"+res.ID, time.Hour))
			wantMismatch(t, "16-partition store after the restart, "+res.String(), err, 16, 8)
			if l16.LeaseKey(res) != l8.LeaseKey(res) && b.client.Exists(ctx, l16.LeaseKey(res)).Val() != 0 {
				t.Fatalf("%s held under a second key %s", res, l16.LeaseKey(res))
			}
		}
		if got := lease(t)(eight.Inspect(ctx, r)); got.Owner != "w8" || got.Token != held8.Token {
			t.Fatalf("the 8-partition store's lease changed: %+v", got)
		}
	})
}

// restart loses every key of the backend's Redis: a restart without
// persistence (a flush on miniredis).
func restart(t *testing.T, b *backend) {
	t.Helper()
	if b.mini != nil {
		b.mini.FlushAll()
		return
	}
	b.srv.Kill()
	if err := b.srv.Restart(); err != nil {
		t.Fatal(err)
	}
}

// TestUnmarkedFenceIsMarkedAfterTheCheck: a fence written before markers
// (or by hand) is marked by the next fresh acquisition, its token kept,
// once the recorded count agrees; a marker that is not a count is corrupt.
func TestUnmarkedFenceIsMarkedAfterTheCheck(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(2))
		r := coordinator.Plan("1")
		p := s.Layout().Partition(r)
		must[string](t)(b.client.Set(ctx, s.Layout().FenceKey(p), "9000000000000000000", 0).Result())
		l := lease(t)(s.Acquire(ctx, request(r, "w1", "a", time.Hour)))
		if l.Token != 9000000000000000001 {
			t.Fatalf("token %d, want the old fence + 1", l.Token)
		}
		if got := must[string](t)(b.client.Get(ctx, s.Layout().FenceKey(p)).Result()); got != "9000000000000000001/2" {
			t.Fatalf("fence %q, want it marked", got)
		}
		must[string](t)(b.client.Set(ctx, s.Layout().FenceKey(1-p), "5/two", 0).Result())
		if _, err := s.ReadPartitions(ctx); err == nil || !strings.Contains(err.Error(), s.Layout().FenceKey(1-p)) {
			t.Fatalf("ReadPartitions with a marker %q: %v", "two", err)
		}
		must[int64](t)(b.client.Del(ctx, s.Layout().ConfigKey()).Result())
		if err := redisstore.New(b.client, redisstore.WithPrefix(s.Layout().Prefix()), redisstore.WithPartitions(2)).CheckPartitions(ctx); err == nil {
			t.Fatal("CheckPartitions with a corrupt marker and no recorded count: nil")
		}
		must[string](t)(b.client.Set(ctx, s.Layout().ConfigKey(), "0", 0).Result())
		if _, err := s.ReadPartitions(ctx); err == nil || !strings.Contains(err.Error(), s.Layout().ConfigKey()) {
			t.Fatalf("ReadPartitions with a count of 0: %v", err)
		}
	})
}
