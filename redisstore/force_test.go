package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
	"github.com/lockcoord/lockcoord/redisstore"
)

func TestForceRelease(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		var ids reqIDs
		r := coordinator.Project("stuck/9")
		for range 3 {
			lease(t)(s.Acquire(ctx, request(r, "dead-worker", ids.next(), time.Minute)))
		}
		other := coordinator.Project("other")
		lease(t)(s.Acquire(ctx, request(other, "dead-worker", ids.next(), time.Minute)))

		l := lease(t)(s.ForceRelease(ctx, r, "op-1"))
		if l.Owner != "dead-worker" || l.Count != 0 || l.Resource != r {
			t.Fatalf("ForceRelease = %+v, want the dead worker's lease with no holds left", l)
		}
		if _, err := s.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("Inspect after ForceRelease: %v", err)
		}
		p := s.Layout().Partition(r)
		if ok := must[bool](t)(b.client.SIsMember(ctx, s.Layout().OwnerKey(p, "dead-worker"), r.String()).Result()); ok {
			t.Fatal("the forced lease is still in the owner's index")
		}
		if got := lease(t)(s.Inspect(ctx, other)); got.Count != 1 {
			t.Fatalf("ForceRelease touched another lease: %+v", got)
		}
		// free: ErrNotHeld (also for a repeat of the same request: the
		// lease it removed is gone)
		for _, id := range []string{"op-2", "op-1"} {
			if _, err := s.ForceRelease(ctx, r, id); !errors.Is(err, coordinator.ErrNotHeld) {
				t.Fatalf("ForceRelease %s of a free resource: %v, want ErrNotHeld", id, err)
			}
		}
		// the resource is free for anyone, with a greater token
		n := lease(t)(s.Acquire(ctx, request(r, "w2", ids.next(), time.Minute)))
		if n.Token <= l.Token {
			t.Fatalf("token %d after a forced release of %d", n.Token, l.Token)
		}
		// a late retry of the first force answers its first result and
		// leaves the new lease alone
		again := lease(t)(s.ForceRelease(ctx, r, "op-1"))
		if again.Token != l.Token || again.Owner != l.Owner {
			t.Fatalf("repeated ForceRelease = %+v, want %+v", again, l)
		}
		if got := lease(t)(s.Inspect(ctx, r)); got.Owner != "w2" || got.Token != n.Token {
			t.Fatalf("a repeated ForceRelease removed the next lease: %+v", got)
		}
		// invalid: ErrInvalid, nothing sent
		before := must[int64](t)(b.client.DBSize(ctx).Result())
		for _, bad := range []coordinator.Resource{{Type: "", ID: "1"}, {Type: "plan", ID: ""}, {Type: "Plan", ID: "1"}, {Type: "plan", ID: "a\x00"}} {
			var ve *coordinator.ValidationError
			if _, err := s.ForceRelease(ctx, bad, "op-3"); !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) {
				t.Fatalf("ForceRelease(%q): %v, want ErrInvalid", bad, err)
			}
		}
		if after := must[int64](t)(b.client.DBSize(ctx).Result()); after != before {
			t.Fatalf("invalid ForceRelease changed the keyspace: %d keys, were %d", after, before)
		}
	})
}

// thief is a go-redis hook that hands the lease to another owner just
// before the force script runs, the race ForceRelease must survive: it
// read one holder, and the script finds another.
type thief struct {
	key    string
	steals int32 // how many force scripts to get in front of
	n      atomic.Int32
	mini   func(key, owner string)
}

func (h *thief) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *thief) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *thief) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		isForce := (cmd.Name() == "evalsha" || cmd.Name() == "eval") && slices.Contains(args, any("force"))
		if isForce && h.n.Load() < h.steals {
			h.mini(h.key, "thief-"+strconv.Itoa(int(h.n.Add(1))))
		}
		return next(ctx, cmd)
	}
}

func TestForceReleaseRace(t *testing.T) {
	for _, tc := range []struct {
		steals  int32
		wantErr bool
	}{
		{steals: 1}, {steals: 3}, {steals: 4, wantErr: true},
	} {
		t.Run("steals="+strconv.Itoa(int(tc.steals)), func(t *testing.T) {
			b := newMiniBackend(t)
			ctx := t.Context()
			s := redisstore.New(b.client)
			r := coordinator.Plan("contended")
			lease(t)(s.Acquire(ctx, request(r, "w1", "a", time.Minute)))
			if err := scripts.Release().Load(ctx, b.client).Err(); err != nil {
				t.Fatal(err)
			}
			h := &thief{key: s.Layout().LeaseKey(r), steals: tc.steals, mini: func(key, owner string) { b.mini.HSet(key, "owner", owner) }}
			b.client.AddHook(h)
			l, err := s.ForceRelease(ctx, r, "force-1")
			if tc.wantErr {
				var le *coordinator.LeaseError
				if !errors.Is(err, coordinator.ErrNotHeld) || !errors.As(err, &le) || le.Holder != "thief-4" {
					t.Fatalf("ForceRelease against 4 steals: %v, want ErrNotHeld naming thief-4", err)
				}
				if got := lease(t)(s.Inspect(ctx, r)); got.Owner != "thief-4" {
					t.Fatalf("lease = %+v after a failed force", got)
				}
				return
			}
			want := "thief-" + strconv.Itoa(int(tc.steals))
			if err != nil || l.Owner != want || l.Count != 0 {
				t.Fatalf("ForceRelease = %+v, %v; want %s's lease removed", l, err, want)
			}
			if _, err := s.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
				t.Fatalf("lease still there: %v", err)
			}
		})
	}
}

// TestForcedBy: the store tells a lease forced off (and by whom) from one
// that expired or was released, by its partition's latest events; with
// the outbox off it cannot tell.
func TestForcedBy(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		var ids reqIDs
		r := coordinator.Plan("forced-by")
		l := lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		if _, forced, err := s.ForcedBy(ctx, r, l.Token); err != nil || forced {
			t.Fatalf("ForcedBy of a held lease = %v, %v", forced, err)
		}
		lease(t)(s.ForceReleaseBy(ctx, r, "carol", ids.next()))
		if by, forced, err := s.ForcedBy(ctx, r, l.Token); err != nil || !forced || by != "carol" {
			t.Fatalf("ForcedBy = %q, %v, %v; want carol", by, forced, err)
		}
		// another token, a released lease: not forced
		if _, forced, _ := s.ForcedBy(ctx, r, l.Token+1); forced {
			t.Fatal("ForcedBy matched another token")
		}
		n := lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
		lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
		if _, forced, _ := s.ForcedBy(ctx, r, n.Token); forced {
			t.Fatal("ForcedBy says a released lease was forced")
		}
		if _, _, err := s.ForcedBy(ctx, coordinator.Plan(""), 1); !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("ForcedBy of an invalid resource: %v", err)
		}
		off := b.newStore(t, redisstore.WithOutbox(false))
		if _, forced, err := off.ForcedBy(ctx, r, l.Token); err != nil || forced {
			t.Fatalf("ForcedBy with the outbox off = %v, %v; want false", forced, err)
		}
	})
}
