package redisstore_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/redisharness"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// backend is a Redis to run a test on: a miniredis or a throwaway
// redis-server. Stores made by newStore get a key prefix of their own
// (an option given later may replace it) and are cleaned up.
type backend struct {
	name   string
	mini   *miniredis.Miniredis // nil on a real Redis
	srv    *testredis.Server    // nil on miniredis
	client *redis.Client
}

func newMiniBackend(t *testing.T) *backend {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return &backend{name: "miniredis", mini: mr, client: c}
}

func newRealBackend(t *testing.T) *backend {
	srv := testredis.Start(t)
	return &backend{name: "redis", srv: srv, client: srv.Client(t)}
}

// onBoth runs fn as a subtest on miniredis and on a real Redis (skipped
// when redis-server is missing, failed under CI).
func onBoth(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("miniredis", func(t *testing.T) { fn(t, newMiniBackend(t)) })
	t.Run("redis", func(t *testing.T) { fn(t, newRealBackend(t)) })
}

func (b *backend) newStore(t testing.TB, opts ...redisstore.Option) *redisstore.Store {
	return redisharness.NewStore(t, b.client, opts...)
}

// randomPrefix is a key prefix of a test's own.
func randomPrefix() string { return "lctest-" + testutil.RandomHex(6) }

// deleteKeys deletes the keys of layout when t ends.
func deleteKeys(t testing.TB, c redis.UniversalClient, layout redisstore.Layout) {
	t.Cleanup(func() {
		if err := testredis.DeleteKeys(context.Background(), c, layout.KeyPattern()); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

func lease(t testing.TB) func(coordinator.Lease, error) coordinator.Lease {
	return must[coordinator.Lease](t)
}

func request(r coordinator.Resource, owner, id string, ttl time.Duration) coordinator.Request {
	return coordinator.Request{Resource: r, Owner: owner, RequestID: id, TTL: ttl}
}

// reqIDs hands out request ids unique within a test.
type reqIDs struct{ n int }

func (g *reqIDs) next() string { g.n++; return "req" + strconv.Itoa(g.n) }

// entries reads the whole stream key as field maps.
func entries(t testing.TB, c redis.UniversalClient, key string) []map[string]string {
	t.Helper()
	msgs, err := c.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", key, err)
	}
	out := make([]map[string]string, len(msgs))
	for i, m := range msgs {
		out[i] = make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			s, ok := v.(string)
			if !ok {
				t.Fatalf("%s entry %s field %s: %T", key, m.ID, k, v)
			}
			out[i][k] = s
		}
	}
	return out
}

// isNetworkError reports whether err carries the network failure go-redis
// met: a *net.OpError (or any net.Error), or the EOF of a dropped
// connection.
func isNetworkError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
