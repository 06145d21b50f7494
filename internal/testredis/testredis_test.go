package testredis_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

func TestParseInfo(t *testing.T) {
	m := testredis.ParseInfo("# Replication\r\nrole:master\r\nslave0:ip=127.0.0.1,port=1,state=online\r\n")
	if m["role"] != "master" || m["slave0"] != "ip=127.0.0.1,port=1,state=online" || len(m) != 2 {
		t.Fatalf("ParseInfo = %v", m)
	}
}

func TestServerLifecycle(t *testing.T) {
	srv := testredis.Start(t, "--maxmemory-policy", "noeviction")
	ctx := t.Context()
	if !srv.Running() || srv.Dir() == "" {
		t.Fatalf("started server: running %v, folder %q", srv.Running(), srv.Dir())
	}
	if err := srv.Start(ctx); err == nil {
		t.Fatal("a second Start of a running server passed")
	}
	c := srv.Client(t)
	if v, err := c.ConfigGet(ctx, "maxmemory-policy").Result(); err != nil || v["maxmemory-policy"] != "noeviction" {
		t.Fatalf("extra args: CONFIG GET = %v, %v", v, err)
	}
	info, err := srv.Info(ctx, "replication")
	if err != nil || info["role"] != "master" {
		t.Fatalf("Info = %v, %v", info, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "k").Val(); n != 0 {
		t.Fatalf("after FlushAll, k exists (%d)", n)
	}
	srv.Kill()
	srv.Kill() // killing a stopped server does nothing
	if srv.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := srv.Do(ctx, "PING"); err == nil {
		t.Fatal("a killed server answered")
	}
	if err := srv.Freeze(); err == nil {
		t.Fatal("froze a stopped server")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := srv.Do(ctx, "PING"); err != nil || v != "PONG" {
		t.Fatalf("after Restart: %v, %v", v, err)
	}
}

func TestServerFreezeAndPause(t *testing.T) {
	srv := testredis.Start(t)
	ctx := t.Context()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, ReadTimeout: 100 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	// a frozen server keeps the connection and answers nothing
	if err := c.Ping(ctx).Err(); !isTimeout(err) {
		t.Fatalf("PING to a frozen server: %v, want a timeout", err)
	}
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Thaw: %v", err)
	}
	if err := srv.Pause(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); !isTimeout(err) {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func TestNewFailsOnAFile(t *testing.T) {
	if _, err := testredis.New("/dev/null/x", 1); err == nil {
		t.Fatal("New made a folder under a file")
	}
	if _, err := testredis.LookPath("no-such-redis-binary"); !errors.Is(err, testredis.ErrNotInstalled) {
		t.Fatalf("LookPath = %v, want ErrNotInstalled", err)
	}
	srv, err := testredis.New(t.TempDir(), 1, "/bin/false")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Start(ctx); err == nil || srv.Running() {
		t.Fatalf("a process that never answers: %v, running %v", err, srv.Running())
	}
}

func TestDeleteKeys(t *testing.T) {
	srv := testredis.Start(t)
	ctx := t.Context()
	c := srv.Client(t)
	for _, k := range []string{"a:1", "a:2", "a:{x}:3", "ab:1", "b:1"} {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := testredis.DeleteKeys(ctx, c, "a:*"); err != nil {
		t.Fatal(err)
	}
	left, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"ab:1", "b:1"}) {
		t.Fatalf("after DeleteKeys(a:*): %v", left)
	}
	srv.Kill()
	if err := testredis.DeleteKeys(ctx, c, "b:*"); err == nil {
		t.Fatal("DeleteKeys on a stopped server passed")
	}
}
