package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Holders implements coordinator.Store. It reads the lease hash
// (HGETALL), its PTTL and Redis TIME in one round trip: an exclusive
// lease is one holder whose Remaining is the PTTL; on a shared resource
// each holder's Remaining is its expiry less TIME, and a holder with
// nothing left has expired (the scripts drop it with their next write).
func (s *Store) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	ls, err := s.holders(ctx, r)
	if err != nil && !errors.Is(err, coordinator.ErrNotHeld) {
		return nil, opError("holders of "+r.String(), err)
	}
	return ls, err
}

// holders is Holders of a valid resource, its error not naming the
// operation (but for ErrNotHeld's).
func (s *Store) holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	key := s.layout.LeaseKey(r)
	var get *redis.MapStringStringCmd
	var pttl *redis.DurationCmd
	var now *redis.TimeCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGetAll(ctx, key)
		pttl = p.PTTL(ctx, key)
		now = p.Time(ctx)
		return nil
	})
	s.refreshOnFailure(err)
	if err != nil {
		if _, ok := errors.AsType[redis.Error](get.Err()); ok && strings.HasPrefix(get.Err().Error(), "WRONGTYPE") {
			return nil, fmt.Errorf("%w: lease %s: %w", ErrCorrupt, key, get.Err())
		}
		return nil, err
	}
	ls, err := parseHash(r, get.Val(), pttl.Val(), now.Val())
	if err != nil {
		return nil, fmt.Errorf("%w: lease %s: %w", ErrCorrupt, key, err)
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("%w: %s is free", coordinator.ErrNotHeld, r)
	}
	return ls, nil
}

// holdFields are the fields of one hold, in the order leaseFrom reads
// them after the owner.
var holdFields = [...]string{"count", "token", "acquired_at", "expires_at"}

// parseHash reads lease hash f of r (see lib.lua's read_state), whose key
// had pttl left at Redis time now, into its live holds sorted by expiry,
// then owner; none when r is free. It checks what the scripts check
// (wellFormed).
func parseHash(r coordinator.Resource, f map[string]string, pttl time.Duration, now time.Time) ([]coordinator.Lease, error) {
	mode, shared := f["mode"]
	if !shared {
		if f["owner"] == "" && f["count"] == "" && f["token"] == "" && f["acquired_at"] == "" && f["expires_at"] == "" {
			return nil, nil
		}
		l, err := holdFrom(r, f, f["owner"], "")
		if err != nil {
			return nil, err
		}
		l.Remaining = max(pttl, 0)
		return []coordinator.Lease{l}, nil
	}
	if mode != "shared" {
		return nil, fmt.Errorf("mode: %q", mode)
	}
	cp, err := strconv.Atoi(f["cap"])
	if err != nil || cp < 0 {
		return nil, fmt.Errorf("cap: %q", f["cap"])
	}
	now = now.Truncate(time.Millisecond)
	var ls []coordinator.Lease
	holds := 0
	for k := range f {
		owner, ok := strings.CutPrefix(k, "count:")
		if !ok {
			continue
		}
		holds++
		l, err := holdFrom(r, f, owner, ":"+owner)
		if err != nil {
			return nil, fmt.Errorf("holder %q: %w", owner, err)
		}
		l.Mode, l.Permits, l.Remaining = coordinator.ModeShared, cp, l.ExpiresAt.Sub(now)
		if l.Remaining > 0 { // else expired: the scripts drop it with their next write
			ls = append(ls, l)
		}
	}
	if holds == 0 {
		return nil, errors.New("shared, without holders")
	}
	slices.SortFunc(ls, func(a, b coordinator.Lease) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.Owner, b.Owner))
	})
	return ls, nil
}

// holdFrom reads the hold of owner from hash f, its fields named with
// suffix ("" for an exclusive lease, ":<owner>" for a holder of a shared
// one).
func holdFrom(r coordinator.Resource, f map[string]string, owner, suffix string) (coordinator.Lease, error) {
	v := []any{owner}
	for _, name := range holdFields {
		x, ok := f[name+suffix]
		if !ok {
			return coordinator.Lease{}, fmt.Errorf("%s: missing", name)
		}
		v = append(v, x)
	}
	l, err := leaseFrom(r, v)
	if err == nil {
		err = wellFormed(l)
	}
	l.Meta = f["meta"+suffix]
	return l, err
}
