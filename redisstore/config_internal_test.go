package redisstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestPersistenceAndProblem(t *testing.T) {
	for _, tc := range []struct {
		sc   ServerConfig
		want string
	}{
		{ServerConfig{}, "unknown"},
		{ServerConfig{AOF: true}, "aof, rdb unknown"},
		{ServerConfig{PersistenceKnown: true}, "none"},
		{ServerConfig{PersistenceKnown: true, AOF: true}, "aof"},
		{ServerConfig{PersistenceKnown: true, RDB: true}, "rdb"},
		{ServerConfig{PersistenceKnown: true, AOF: true, RDB: true}, "aof+rdb"},
	} {
		if got := tc.sc.Persistence(); got != tc.want {
			t.Errorf("Persistence(%+v) = %q, want %q", tc.sc, got, tc.want)
		}
	}
	if p := (ServerConfig{Addr: "a", Policy: "allkeys-lru"}).Problem(); !strings.Contains(p, "allkeys-lru can evict leases") {
		t.Errorf("Problem = %q", p)
	}
	if p := (ServerConfig{Policy: SafePolicy}).Problem(); p != "" {
		t.Errorf("Problem of noeviction = %q", p)
	}
}

func TestParseFence(t *testing.T) {
	for v, want := range map[string][2]uint64{"17": {17, 0}, "17/16": {17, 16}, "9223372036854775806/1": {9223372036854775806, 1}} {
		tok, n, err := ParseFence(v)
		if err != nil || tok != want[0] || uint64(n) != want[1] {
			t.Errorf("ParseFence(%q) = %d, %d, %v", v, tok, n, err)
		}
	}
	for _, v := range []string{"", "x/16", "17/x", "17/0", "-1"} {
		if _, _, err := ParseFence(v); err == nil || !strings.Contains(err.Error(), "redisstore: fence") {
			t.Errorf("ParseFence(%q): %v", v, err)
		}
	}
}

func TestIsMiniredis(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": mr.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	if mini, err := isMiniredis(ctx, ring); mini || err != nil {
		t.Errorf("a ring: %v, %v; want false, nil", mini, err)
	}
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	if mini, err := isMiniredis(ctx, c); !mini || err != nil {
		t.Errorf("a miniredis: %v, %v; want true, nil", mini, err)
	}
	// a HELLO that got no reply leaves the answer unknown: an error, not
	// "not a miniredis" (whose unknown policy would then be refused)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if mini, err := isMiniredis(cancelled, c); mini || !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled HELLO: %v, %v; want false, context.Canceled", mini, err)
	}
	// a server that refuses HELLO (it replied) is not a miniredis
	mr.SetError("ERR unknown command 'hello'")
	if mini, err := isMiniredis(ctx, c); mini || err != nil {
		t.Errorf("HELLO refused: %v, %v; want false, nil", mini, err)
	}
	mr.SetError("")
	mr.Close()
	if mini, err := isMiniredis(ctx, c); mini || err == nil {
		t.Errorf("a closed miniredis: %v, %v; want false and the error", mini, err)
	}
}

func TestFailure(t *testing.T) {
	err := failure("step", errors.New("boom"))
	if err.Error() != "step: boom" {
		t.Errorf("failure = %v", err)
	}
}
