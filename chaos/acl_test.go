package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// aclRules are the ACL SETUSER rules of a user limited to the keys and
// channels of prefix and the commands lockcoord sends: those of the
// library and of pgaudit, and those its Lua scripts run (Redis checks a
// script's commands against the caller's ACL).
func aclRules(prefix, password string) []any {
	rules := []string{
		"reset", "on", ">" + password,
		"~" + prefix + ":*",                  // keys: only the prefix's
		"resetchannels", "&" + prefix + ":*", // release notifications
		"-@all",
		// connection; INFO: the maxmemory-policy the store checks
		"+ping", "+info",
		// redisstore: scripts, partition count (SET NX), inspect, release-all,
		// release notifications (SSUBSCRIBE on Cluster)
		"+evalsha", "+eval", "+set", "+get", "+hmget", "+smembers", "+srem",
		"+subscribe", "+unsubscribe", "+ssubscribe", "+sunsubscribe",
		// inside the scripts (SPUBLISH on Cluster)
		"+time", "+hgetall", "+hset", "+hdel", "+pexpire", "+pttl", "+sadd", "+del", "+xadd", "+publish", "+spublish",
		// the expiry index and expire.lua
		"+zadd", "+zrem", "+zrange", "+zremrangebyscore",
		// pgaudit: the mirror, cleanup, diagnostics
		"+xreadgroup", "+xgroup|create", "+xack", "+xautoclaim", "+xinfo|groups", "+xpending",
		"+xrange", "+xlen", "+xtrim", "+scan", "+hget",
		// lockctl inspect
		"+multi", "+exec", "+hgetall",
	}
	out := make([]any, len(rules))
	for i, r := range rules {
		out[i] = r
	}
	return out
}

// TestACLUser is the ACL part of scenario 8: a Redis user limited to
// ~<prefix>:* and the commands the project uses runs the whole lease
// life (acquire, re-entry, renewal by a keep-alive, inspection, waiting
// on release notifications, release, release-all, forced release) and the
// pgaudit mirror, cleanup and diagnostics; FLUSHALL, KEYS, CONFIG and keys
// outside the prefix are refused to it.
func TestACLUser(t *testing.T) {
	parallel(t)
	srv := testredis.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "acl-" + randomHex(3)
	const user, password = "lockcoord", "s3cret-chaos"
	admin := srv.Client(t)
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user}, aclRules(prefix, password)...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: user, Password: password, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	uc := newClient()
	store := redisstore.New(uc, redisstore.WithPrefix(prefix))
	c1 := coordinator.New(store)
	c2 := coordinator.New(redisstore.New(newClient(), redisstore.WithPrefix(prefix)))
	t.Cleanup(func() { _ = c1.Close(context.Background()); _ = c2.Close(context.Background()) })
	r := coordinator.Plan("acl")

	l, err := c1.Acquire(ctx, r, "a", coordinator.TTL(time.Minute))
	if err != nil {
		t.Fatalf("acquire as the ACL user: %v", err)
	}
	if _, err := c1.Acquire(ctx, r, "a"); err != nil {
		t.Fatalf("re-enter: %v", err)
	}
	if _, err := c1.Renew(ctx, r, "a", coordinator.TTL(time.Minute)); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if in, err := c1.Inspect(ctx, r); err != nil || in.Token != l.Token {
		t.Fatalf("inspect: %+v, %v", in, err)
	}
	// a waiter woken by the release notification
	got := make(chan error, 1)
	go func() {
		_, err := c2.Acquire(ctx, r, "b", coordinator.Wait(30*time.Second))
		got <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the waiter queued for the release", func() bool {
		return admin.Exists(ctx, store.Layout().QueueKey(r)).Val() == 1
	})
	if _, err := c1.Release(ctx, r, "a"); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := c1.Release(ctx, r, "a"); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("wait for the release: %v", err)
	}
	if n, err := c2.ReleaseAll(ctx, "b"); err != nil || n != 1 {
		t.Fatalf("release all: %d, %v", n, err)
	}
	// a keep-alive renews the lease of a hold: fn returns once Redis shows
	// the expiry moved (a TTL of seconds, so that a slow machine cannot
	// lose the lease before its first renewal, which comes a third in)
	err = c1.Hold(ctx, r, "a", func(ctx context.Context, l coordinator.Lease) error {
		return testutil.Poll(ctx, 20*time.Millisecond, func() error {
			in, err := c1.Inspect(ctx, r)
			if err != nil {
				return err
			}
			if !in.ExpiresAt.After(l.ExpiresAt) {
				return fmt.Errorf("expiry %v not moved past %v yet", in.ExpiresAt, l.ExpiresAt)
			}
			return nil
		})
	}, coordinator.TTL(3*time.Second))
	if err != nil {
		t.Fatalf("hold: %v", err)
	}
	if _, err := c1.Acquire(ctx, r, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ForceRelease(ctx, r, "admin-1"); err != nil {
		t.Fatalf("force release: %v", err)
	}

	// the release notifications themselves, not the waiters' polling
	sub, err := store.Releases(ctx)
	if err != nil {
		t.Fatalf("subscribe as the ACL user: %v", err)
	}
	if _, err := c1.Acquire(ctx, r, "n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Release(ctx, r, "n"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-sub.Released():
		if got != r {
			t.Errorf("notified of %v, want %v", got, r)
		}
	case <-time.After(10 * time.Second):
		t.Error("no release notification for the ACL user")
	}
	_ = sub.Close()

	t.Run("pgaudit", func(t *testing.T) {
		pool := pgPool(t)
		if _, err := pgaudit.Migrate(ctx, pool, nopLogger()); err != nil {
			t.Fatal(err)
		}
		m := pgaudit.NewMirror(pool, store, pgaudit.WithTrimInterval(0))
		// a lease that dies without a release (a stale row for cleanup),
		// and one held during the diagnostics
		if _, err := c1.Acquire(ctx, coordinator.Plan("acl-dies"), "d", coordinator.TTL(50*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := c1.Acquire(ctx, coordinator.Plan("acl-held"), "h", coordinator.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		n, err := m.Drain(ctx)
		if err != nil {
			t.Fatalf("mirror drain as the ACL user: %v", err)
		}
		if n == 0 {
			t.Fatal("the mirror found no event")
		}
		testutil.Eventually(t, 10*time.Second, "the 50 ms lease to expire", func() bool {
			return admin.Exists(ctx, store.Layout().LeaseKey(coordinator.Plan("acl-dies"))).Val() == 0
		})
		rows, err := m.Cleanup(ctx)
		if err != nil {
			t.Fatalf("cleanup as the ACL user: %v", err)
		}
		if len(rows) != 1 || rows[0].Resource != coordinator.Plan("acl-dies") {
			t.Errorf("cleanup removed %+v, want the lease of plan/acl-dies", rows)
		}
		rep, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1})
		if err != nil {
			t.Fatalf("diagnose as the ACL user: %v", err)
		}
		if rep.LeasesHeld != 1 || rep.RowsMirrored != 1 || rep.MissingCount != 0 || rep.StaleCount != 0 {
			t.Errorf("diagnose as the ACL user: %d held, %d rows, %d missing, %d stale; want 1, 1, 0, 0",
				rep.LeasesHeld, rep.RowsMirrored, rep.MissingCount, rep.StaleCount)
		}
		for _, p := range rep.Lag.Partitions {
			if p.NoGroup {
				t.Errorf("diagnose as the ACL user reports no consumer group on partition %d, which has one", p.Partition)
			}
		}
	})

	for name, cmd := range map[string][]any{
		"FLUSHALL":        {"FLUSHALL"},
		"KEYS":            {"KEYS", "*"},
		"CONFIG GET":      {"CONFIG", "GET", "*"},
		"CONFIG SET":      {"CONFIG", "SET", "appendonly", "no"},
		"key outside":     {"GET", "other:key"},
		"write outside":   {"SET", "other:key", "1"},
		"script outside":  {"EVAL", "return redis.call('SET', KEYS[1], '1')", "1", "other:key"},
		"FLUSHDB":         {"FLUSHDB"},
		"publish outside": {"PUBLISH", "other", "x"},
		"ACL":             {"ACL", "LIST"},
		"SCRIPT FLUSH":    {"SCRIPT", "FLUSH"},
		"CLIENT KILL":     {"CLIENT", "KILL", "ID", "1"},
		"stream outside":  {"XADD", "other:stream", "*", "k", "v"},
	} {
		err := uc.Do(ctx, cmd...).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s as the ACL user: %v, want NOPERM", name, err)
		}
	}
	if n, _ := admin.DBSize(ctx).Result(); n == 0 {
		t.Error("the database is empty: was it flushed?")
	}
	var rerr redis.Error
	if err := uc.Do(ctx, "FLUSHALL").Err(); !errors.As(err, &rerr) {
		t.Errorf("FLUSHALL: %v is not a Redis error reply", err)
	}
}
