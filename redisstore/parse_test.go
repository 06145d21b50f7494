package redisstore_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestParseHolders: ParseHolders of a lease hash read with HGETALL, PTTL
// and TIME gives what Holders gives, for an exclusive and a shared
// resource; an empty hash is free; a hash no script wrote is ErrCorrupt.
func TestParseHolders(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t)
		ex, sh := coordinator.Plan("parse-x"), coordinator.Project("parse-s")
		lease(t)(s.Acquire(ctx, request(ex, "w1", "p1", time.Minute)))
		lease(t)(s.Acquire(ctx, sharedReq(sh, "r1", "p2", time.Minute, 2)))
		lease(t)(s.Acquire(ctx, sharedReq(sh, "r2", "p3", time.Hour, 0)))
		for _, r := range []coordinator.Resource{ex, sh} {
			key := s.Layout().LeaseKey(r)
			f := b.client.HGetAll(ctx, key).Val()
			now := b.client.Time(ctx).Val()
			got, err := redisstore.ParseHolders(r, f, b.client.PTTL(ctx, key).Val(), now)
			if err != nil {
				t.Fatalf("ParseHolders(%s): %v", r, err)
			}
			want, err := s.Holders(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("ParseHolders(%s): %d holders, Holders: %d", r, len(got), len(want))
			}
			for i := range got {
				got[i].Remaining, want[i].Remaining = 0, 0
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("ParseHolders(%s)[%d] = %+v, Holders: %+v", r, i, got[i], want[i])
				}
			}
		}
		if ls, err := redisstore.ParseHolders(ex, map[string]string{}, 0, time.Now()); err != nil || len(ls) != 0 {
			t.Errorf("ParseHolders(empty hash) = %v, %v; want none, nil", ls, err)
		}
		_, err := redisstore.ParseHolders(sh, map[string]string{"mode": "odd"}, 0, time.Now())
		if !errors.Is(err, redisstore.ErrCorrupt) {
			t.Errorf("ParseHolders(mode odd) = %v, want ErrCorrupt", err)
		}
	})
}
