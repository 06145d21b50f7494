package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// miniHarness runs the suite on a miniredis per store.
type miniHarness struct {
	servers map[*redisstore.Store]*miniredis.Miniredis
}

func (h *miniHarness) NewStore(t testing.TB) coordinator.Store {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s := redisstore.New(c)
	h.servers[s] = mr
	return s
}

func (h *miniHarness) Expire(t testing.TB, s coordinator.Store, r coordinator.Resource) {
	mr := h.servers[s.(*redisstore.Store)]
	ttl := mr.TTL(s.(*redisstore.Store).Layout().LeaseKey(r))
	if ttl <= 0 {
		t.Fatalf("no TTL on %s", r)
	}
	mr.FastForward(ttl + time.Millisecond)
}

func (h *miniHarness) RemainingTTL(t testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	mr := h.servers[s.(*redisstore.Store)]
	key := s.(*redisstore.Store).Layout().LeaseKey(r)
	if !mr.Exists(key) {
		return -1
	}
	return mr.TTL(key)
}

func (h *miniHarness) LoseData(t testing.TB, s coordinator.Store) {
	h.servers[s.(*redisstore.Store)].FlushAll()
}

func (h *miniHarness) SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64) {
	st := s.(*redisstore.Store)
	if err := h.servers[st].Set(st.Layout().FenceKey(st.Layout().Partition(r)), strconv.FormatUint(token, 10)); err != nil {
		t.Fatal(err)
	}
}

func (h *miniHarness) DropScripts(t testing.TB, s coordinator.Store) {
	if err := s.(*redisstore.Store).Client().ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// realHarness runs the suite on one throwaway redis-server, each store with
// a prefix of its own.
type realHarness struct {
	srv    *testredis.Server
	client *redis.Client
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "lctest-" + hex.EncodeToString(b[:])
}

func (h *realHarness) NewStore(t testing.TB) coordinator.Store {
	s := redisstore.New(h.client, redisstore.WithPrefix(randomPrefix()))
	t.Cleanup(func() { deletePrefix(t, h.client, s.Layout()) })
	return s
}

func deletePrefix(t testing.TB, c redis.UniversalClient, layout redisstore.Layout) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, layout.KeyPattern(), 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("clean up %s: %v", layout.Prefix(), err)
	}
}

func (h *realHarness) Expire(t testing.TB, s coordinator.Store, r coordinator.Resource) {
	ctx := context.Background()
	key := s.(*redisstore.Store).Layout().LeaseKey(r)
	if err := h.client.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		n, err := h.client.Exists(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if i > 1000 {
			t.Fatalf("%s did not expire", key)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *realHarness) RemainingTTL(t testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	d, err := h.client.PTTL(context.Background(), s.(*redisstore.Store).Layout().LeaseKey(r)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *realHarness) LoseData(t testing.TB, s coordinator.Store) {
	deletePrefix(t, h.client, s.(*redisstore.Store).Layout())
}

func (h *realHarness) SetFence(t testing.TB, s coordinator.Store, r coordinator.Resource, token uint64) {
	st := s.(*redisstore.Store)
	if err := h.client.Set(context.Background(), st.Layout().FenceKey(st.Layout().Partition(r)), token, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func (h *realHarness) DropScripts(t testing.TB, _ coordinator.Store) {
	if err := h.client.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestConformanceMiniredis(t *testing.T) {
	h := &miniHarness{servers: map[*redisstore.Store]*miniredis.Miniredis{}}
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
}

func TestConformanceRedis(t *testing.T) {
	srv := testredis.Start(t)
	h := &realHarness{srv: srv, client: srv.Client(t)}
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
}
