package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// commandCounter is a go-redis hook counting the commands sent.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestInvalidInputSendsNothing (issue 12.5): every Store method refuses
// bad input with a *ValidationError before a command goes to Redis, as
// the coordinator does. Before, Store.Acquire took an owner with invalid
// UTF-8, an id with NUL, a type "Bad:Type", empty names and a request id
// with a space, and wrote events the mirror could not store.
func TestInvalidInputSendsNothing(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	cnt := &commandCounter{}
	b.client.AddHook(cnt)
	s := redisstore.New(b.client, redisstore.WithPrefix(randomPrefix()))
	ok := coordinator.Plan("1")
	calls := map[string]func(req coordinator.Request) error{
		"Acquire": func(req coordinator.Request) error { _, err := s.Acquire(ctx, req); return err },
		"AcquireQueued": func(req coordinator.Request) error {
			_, err := s.AcquireQueued(ctx, req, "c0ffee", coordinator.Queueing{})
			return err
		},
		"Renew":   func(req coordinator.Request) error { _, err := s.Renew(ctx, req); return err },
		"Release": func(req coordinator.Request) error { _, err := s.Release(ctx, req); return err },
		"ReleaseHandOff": func(req coordinator.Request) error {
			_, _, err := s.ReleaseHandOff(ctx, req, "c0ffee")
			return err
		},
		"ReleaseAll": func(req coordinator.Request) error { _, err := s.ReleaseAll(ctx, req.Owner, req.RequestID); return err },
		"ForceRelease": func(req coordinator.Request) error {
			_, err := s.ForceRelease(ctx, req.Resource, req.RequestID)
			return err
		},
		"Inspect": func(req coordinator.Request) error { _, err := s.Inspect(ctx, req.Resource); return err },
		"Unqueue": func(req coordinator.Request) error { return s.Unqueue(ctx, req.Resource, "c0ffee") },
	}
	for _, tc := range []struct {
		req   coordinator.Request
		field string
		skip  []string // calls that do not take the bad argument
	}{
		{request(coordinator.Plan("4\x002"), "w", "r1", time.Minute), "resource id", []string{"ReleaseAll"}},
		{request(coordinator.Plan(""), "w", "r1", time.Minute), "resource id", []string{"ReleaseAll"}},
		{request(coordinator.Resource{Type: "Bad:Type", ID: "1"}, "w", "r1", time.Minute), "resource type", []string{"ReleaseAll"}},
		{request(coordinator.Resource{ID: "1"}, "w", "r1", time.Minute), "resource type", []string{"ReleaseAll"}},
		{request(ok, "w\xff", "r1", time.Minute), "owner", []string{"ForceRelease", "Inspect", "Unqueue"}},
		{request(ok, "", "r1", time.Minute), "owner", []string{"ForceRelease", "Inspect", "Unqueue"}},
		{request(ok, "w", "r 1", time.Minute), "request id", []string{"Inspect", "Unqueue"}},
		{request(ok, "w", "", time.Minute), "request id", []string{"Inspect", "Unqueue"}},
	} {
		for name, call := range calls {
			if slices.Contains(tc.skip, name) {
				continue
			}
			err := call(tc.req)
			var ve *coordinator.ValidationError
			if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field {
				t.Errorf("%s(%+v): %v, want a *ValidationError naming %s", name, tc.req, err, tc.field)
			}
			if n := cnt.n.Swap(0); n != 0 {
				t.Errorf("%s(%+v) sent %d commands to Redis before refusing", name, tc.req, n)
			}
		}
	}
	// TTLs below a millisecond, for Acquire and Renew
	for _, ttl := range []time.Duration{0, time.Microsecond, -time.Minute} {
		if _, err := s.Acquire(ctx, request(ok, "w", "r1", ttl)); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("Acquire with TTL %v: %v", ttl, err)
		}
		if _, err := s.Renew(ctx, request(ok, "w", "r1", ttl)); !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("Renew with TTL %v: %v", ttl, err)
		}
	}
	if n := cnt.n.Load(); n != 0 {
		t.Fatalf("invalid TTLs sent %d commands", n)
	}
}

// TestForceReleaseMemoPerResource (issue 12.6): a ForceRelease that reuses
// a request id within the retry window, in the same partition, removes
// its own lease; before, it returned the first one's memo and removed
// nothing.
func TestForceReleaseMemoPerResource(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		var ids reqIDs
		a, c := coordinator.Plan("a"), coordinator.Plan("c")
		la := lease(t)(s.Acquire(ctx, request(a, "w1", ids.next(), time.Minute)))
		lc := lease(t)(s.Acquire(ctx, request(c, "w2", ids.next(), time.Minute)))
		if l := lease(t)(s.ForceRelease(ctx, a, "op-1")); l.Token != la.Token {
			t.Fatalf("force of a = %+v", l)
		}
		l := lease(t)(s.ForceRelease(ctx, c, "op-1"))
		if l.Resource != c || l.Token != lc.Token || l.Owner != "w2" {
			t.Fatalf("force of c with a's request id = %+v, want c's lease (token %d)", l, lc.Token)
		}
		if _, err := s.Inspect(ctx, c); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("c still held: %v", err)
		}
	})
}
