package cluster_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/redisstore"
)

// masterOfSlot maps every slot to the address of the master serving it,
// from CLUSTER SLOTS.
func masterOfSlot(t *testing.T, ctx context.Context, cc *redis.ClusterClient) map[int64]string {
	t.Helper()
	slots, err := cc.ClusterSlots(ctx).Result() //nolint:staticcheck // CLUSTER SLOTS gives master addresses directly and works on every Redis 7
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	out := map[int64]string{}
	for _, s := range slots {
		for slot := s.Start; slot <= s.End; slot++ {
			out[int64(slot)] = s.Nodes[0].Addr
		}
	}
	if len(out) != 16384 {
		t.Fatalf("CLUSTER SLOTS covers %d slots", len(out))
	}
	return out
}

// TestPartitionsSpreadOverMasters: the default 16 partitions land on
// every master, every key of a partition is in the partition's slot, and
// a lease is stored on the master of its partition.
func TestPartitionsSpreadOverMasters(t *testing.T) {
	cl := env.NeedCluster(t)
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc)
	owner := masterOfSlot(t, ctx, cc)
	masters, err := cl.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perMaster := map[string][]int{}
	for _, r := range resourcePerPartition(s, "job") {
		p := s.Layout().Partition(r)
		keys := []string{s.Layout().LeaseKey(r), s.Layout().FenceKey(p), s.Layout().StreamKey(p), s.Layout().OwnerKey(p, "w1"), s.Layout().ReleaseChannel(p)}
		slot, err := cc.ClusterKeySlot(ctx, keys[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys[1:] {
			if got, err := cc.ClusterKeySlot(ctx, k).Result(); err != nil || got != slot {
				t.Fatalf("partition %d: KEYSLOT %s = %d, %v; %s is in %d", p, k, got, err, keys[0], slot)
			}
		}
		perMaster[owner[slot]] = append(perMaster[owner[slot]], p)

		need(t)(s.Acquire(ctx, request(r, "w1", fmt.Sprint("a", p))))
		// the lease is on that master; the others redirect to it
		for _, m := range masters {
			n, err := cl.Node(m.Addr).Client(t).Exists(ctx, s.Layout().LeaseKey(r)).Result()
			if m.Addr == owner[slot] {
				if err != nil || n != 1 {
					t.Fatalf("lease %s not on %s, the master of slot %d: %d, %v", r, m.Addr, slot, n, err)
				}
			} else if addr, ok := redis.IsMovedError(err); !ok || addr != owner[slot] {
				t.Fatalf("EXISTS %s on %s = %d, %v; want MOVED to %s", r, m.Addr, n, err, owner[slot])
			}
		}
	}
	var lines []string
	for _, m := range masters {
		ps := perMaster[m.Addr]
		if len(ps) == 0 {
			t.Errorf("master %s (slots %v) holds no partition", m.Addr, m.Slots)
		}
		sort.Ints(ps)
		lines = append(lines, fmt.Sprintf("%s: %v", m.Addr, ps))
	}
	t.Logf("partitions per master: %s", strings.Join(lines, "; "))
	if len(masters) != 3 {
		t.Fatalf("%d masters serve slots, want 3", len(masters))
	}

	// the partition count record has no hash tag: one key, one slot,
	// read and written by single-key commands only
	if err := s.CheckPartitions(ctx); err != nil {
		t.Fatalf("CheckPartitions on Cluster: %v", err)
	}
	other := redisstore.New(cc, redisstore.WithPrefix(s.Layout().Prefix()), redisstore.WithPartitions(8))
	if err := other.CheckPartitions(ctx); err == nil {
		t.Fatal("a store with another partition count passed CheckPartitions")
	}
}
