package redisstore

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestShardCloseRaces: a shard's close is idempotent, tolerates a
// subscription go-redis already closed, and a replacement made while (or
// after) the shard closes is closed at once instead of leaking.
func TestShardCloseRaces(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	sh := &shard{subscribe: func(ctx context.Context) *redis.PubSub { return c.Subscribe(ctx, "lctest:chan") }}
	sh.ps = sh.subscribe(ctx)
	if _, err := sh.ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// go-redis closed it already: ErrClosed is not an error of close
	if err := sh.ps.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sh.close(); err != nil {
		t.Fatalf("close of an already closed PubSub: %v", err)
	}
	if err := sh.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if ps := sh.replace(); ps != nil {
		t.Fatal("replace after close returned a subscription")
	}
	// a shard that never subscribed closes too
	empty := &shard{}
	if err := empty.close(); err != nil || !empty.closed {
		t.Fatalf("close of a shard without subscription: %v, closed %v", err, empty.closed)
	}
}
