// Package redisharness is the one storetest.Harness of redisstore: the
// conformance suites of coordinator/storetest run through it on a
// miniredis per store (Mini) and on a client of any real Redis
// deployment — a standalone server, a Cluster or a Sentinel group
// (Client). The redisstore and cluster tests differ only in what they
// connect to.
package redisharness

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// RunAll runs the suite every Store passes and those of the optional
// capabilities redisstore offers (release notifications, the waiter
// queue and its fairness, lease events).
func RunAll(t *testing.T, h storetest.Harness) {
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
	storetest.RunWatcher(t, h)
	storetest.RunFairQueue(t, h)
}

// capabilities are those of redisstore's stores (see storetest.Capable).
var capabilities = []storetest.Capability{storetest.Shared, storetest.FairQueue, storetest.ExpiryEvents}

// Capabilities implements storetest.Capable.
func (h *Client) Capabilities() []storetest.Capability { return capabilities }

// Capabilities implements storetest.Capable.
func (h *Mini) Capabilities() []storetest.Capability { return capabilities }

// Client runs the suites on one client of a real Redis (standalone,
// Cluster or Sentinel), each store with a key prefix of its own whose
// keys are deleted when its test ends.
type Client struct {
	// Client is the client every store uses.
	Client redis.UniversalClient
	// Options are added to every store's options (after the prefix).
	Options []redisstore.Option
}

// NewStore returns a store with a new prefix.
func (h *Client) NewStore(t testing.TB) coordinator.Store {
	return NewStore(t, h.Client, h.Options...)
}

// NewStore returns a store on client with a key prefix of its own (opts
// may replace it), whose keys are deleted when t ends.
func NewStore(t testing.TB, client redis.UniversalClient, opts ...redisstore.Option) *redisstore.Store {
	s := redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix("lctest-" + testutil.RandomHex(6))}, opts...)...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := testredis.DeleteKeys(ctx, client, s.Layout().KeyPattern()); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	return s
}

// Expire gives the lease on r a TTL of 1 ms and waits until it is gone.
func (h *Client) Expire(t testing.TB, s coordinator.Store, r coordinator.Resource) {
	t.Helper()
	key := s.(*redisstore.Store).Layout().LeaseKey(r)
	if err := h.Client.PExpire(t.Context(), key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	now, err := h.Client.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	moveExpiry(t, h.Client, s, r, now.Add(time.Millisecond))
	testutil.Eventually(t, 10*time.Second, key+" to expire", func() bool {
		n, err := h.Client.Exists(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// RemainingTTL returns the PTTL of the lease on r.
func (h *Client) RemainingTTL(t testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	t.Helper()
	d, err := h.Client.PTTL(t.Context(), s.(*redisstore.Store).Layout().LeaseKey(r)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// LoseData deletes every key of the store's prefix.
func (h *Client) LoseData(t testing.TB, s coordinator.Store) {
	t.Helper()
	if err := testredis.DeleteKeys(t.Context(), h.Client, s.(*redisstore.Store).Layout().KeyPattern()); err != nil {
		t.Fatal(err)
	}
}

// SetFence sets the fence counter of r's partition.
func (h *Client) SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64) {
	t.Helper()
	st := s.(*redisstore.Store)
	if err := h.Client.Set(t.Context(), st.Layout().FenceKey(st.Layout().Partition(r)), token, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// DropScripts empties the script cache: of every master and replica of a
// Cluster, so that EVALSHA finds the scripts nowhere.
func (h *Client) DropScripts(t testing.TB, _ coordinator.Store) {
	t.Helper()
	ctx := t.Context()
	var err error
	if cc, ok := h.Client.(*redis.ClusterClient); ok {
		err = cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ScriptFlush(ctx).Err()
		})
	} else {
		err = h.Client.ScriptFlush(ctx).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Mini runs the suites on a miniredis per store, whose clock it moves to
// expire leases.
type Mini struct {
	// Options are every store's options.
	Options []redisstore.Option

	mu      sync.Mutex
	servers map[*redisstore.Store]*miniredis.Miniredis
}

// NewStore returns a store (h.Options) on a new miniredis.
func (h *Mini) NewStore(t testing.TB) coordinator.Store {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s := redisstore.New(c, h.Options...)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.servers == nil {
		h.servers = map[*redisstore.Store]*miniredis.Miniredis{}
	}
	h.servers[s] = mr
	return s
}

func (h *Mini) server(s coordinator.Store) (*miniredis.Miniredis, *redisstore.Store) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := s.(*redisstore.Store)
	return h.servers[st], st
}

// Expire moves the miniredis's clock past the lease's TTL.
func (h *Mini) Expire(t testing.TB, s coordinator.Store, r coordinator.Resource) {
	t.Helper()
	mr, st := h.server(s)
	ttl := mr.TTL(st.Layout().LeaseKey(r))
	if ttl <= 0 {
		t.Fatalf("no TTL on %s", r)
	}
	mr.FastForward(ttl + time.Millisecond)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = c.Close() }()
	moveExpiry(t, c, s, r, time.Now()) // miniredis's TIME is the wall clock
}

// moveExpiry gives r's holds in the expiry index of its partition the
// expiry at, as Expire cut the lease's life short: the index is the
// scripts' record of when each hold ends (see lib.lua's expiry_member:
// the member's third and fourth lines are the type and the id).
func moveExpiry(t testing.TB, c redis.UniversalClient, s coordinator.Store, r coordinator.Resource, at time.Time) {
	t.Helper()
	l := s.(*redisstore.Store).Layout()
	key := l.ExpiryKey(l.Partition(r))
	members, err := c.ZRange(t.Context(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		f := strings.SplitN(m, "\n", 5)
		if len(f) == 5 && f[2] == r.Type && f[3] == r.ID {
			if err := c.ZAddXX(t.Context(), key, redis.Z{Score: float64(at.UnixMilli()), Member: m}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// RemainingTTL returns the lease's TTL, negative when there is no lease.
func (h *Mini) RemainingTTL(_ testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	mr, st := h.server(s)
	if !mr.Exists(st.Layout().LeaseKey(r)) {
		return -1
	}
	return mr.TTL(st.Layout().LeaseKey(r))
}

// LoseData flushes the store's miniredis.
func (h *Mini) LoseData(_ testing.TB, s coordinator.Store) {
	mr, _ := h.server(s)
	mr.FlushAll()
}

// SetFence sets the fence counter of r's partition.
func (h *Mini) SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64) {
	t.Helper()
	mr, st := h.server(s)
	if err := mr.Set(st.Layout().FenceKey(st.Layout().Partition(r)), strconv.FormatUint(token, 10)); err != nil {
		t.Fatal(err)
	}
}

// DropScripts empties the miniredis's script cache.
func (h *Mini) DropScripts(t testing.TB, s coordinator.Store) {
	t.Helper()
	if err := s.(*redisstore.Store).Client().ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}
