package redisstore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Script reply statuses (see the scripts' headers).
const (
	statusOtherToken = -2
	statusFree       = -1
	statusConflict   = 0
	statusHandedOff  = 4 // release.lua: released, the turn given to the releaser's waiters
)

// parseReply reads {status, owner, count, token, acquired_at, expires_at}.
func parseReply(r coordinator.Resource, v []any) (int64, coordinator.Lease, error) {
	if len(v) == 0 {
		return 0, coordinator.Lease{}, fmt.Errorf("empty script reply")
	}
	st, err := toInt(v[0])
	if err != nil {
		return 0, coordinator.Lease{}, fmt.Errorf("script status: %w", err)
	}
	if st == statusFree {
		return st, coordinator.Lease{}, nil
	}
	if len(v) != 6 {
		return 0, coordinator.Lease{}, fmt.Errorf("script reply has %d elements, want 6", len(v))
	}
	l, err := leaseFrom(r, v[1:])
	return st, l, err
}

// leaseFrom reads {owner, count, token, acquired_at, expires_at}.
func leaseFrom(r coordinator.Resource, v []any) (coordinator.Lease, error) {
	owner, ok := v[0].(string)
	if !ok {
		return coordinator.Lease{}, fmt.Errorf("owner: unexpected %T", v[0])
	}
	count, err := toInt(v[1])
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("count: %w", err)
	}
	token, err := toUint(v[2])
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("token: %w", err)
	}
	acq, err := toInt(v[3])
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("acquired_at: %w", err)
	}
	exp, err := toInt(v[4])
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("expires_at: %w", err)
	}
	return coordinator.Lease{Resource: r, Owner: owner, Count: int(count), Token: token,
		AcquiredAt: time.UnixMilli(acq), ExpiresAt: time.UnixMilli(exp)}, nil
}

// wellFormed checks what the scripts check of a lease hash (lib.lua's
// lease_fault): an owner, a count of at least 1, a token from 1 to
// 2^63 - 1, times that are not negative.
func wellFormed(l coordinator.Lease) error {
	switch {
	case l.Owner == "":
		return errors.New("owner: empty")
	case l.Count < 1:
		return fmt.Errorf("count: %d", l.Count)
	case l.Token == 0 || l.Token > math.MaxInt64:
		return fmt.Errorf("token: %d", l.Token)
	case l.AcquiredAt.UnixMilli() < 0:
		return fmt.Errorf("acquired_at: %d", l.AcquiredAt.UnixMilli())
	case l.ExpiresAt.UnixMilli() < 0:
		return fmt.Errorf("expires_at: %d", l.ExpiresAt.UnixMilli())
	}
	return nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	default:
		return 0, fmt.Errorf("unexpected %T", v)
	}
}

func toUint(v any) (uint64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("negative %d", x)
		}
		return uint64(x), nil
	case string:
		return strconv.ParseUint(x, 10, 64)
	default:
		return 0, fmt.Errorf("unexpected %T", v)
	}
}
