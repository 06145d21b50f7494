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
	statusHandedOff  = 4  // release.lua: released, the turn given to the releaser's waiters
	statusCap        = -3 // acquire.lua: a cap other than the recorded one
	statusUpgrade    = -4 // acquire.lua: an upgrade beside other shared holders
)

// capError is the refusal of a request for cap n on r, recorded with
// rec (0: none).
func capError(r coordinator.Resource, n, rec int) error {
	rule := fmt.Sprintf("resource %s is capped at %d by its holders", r, rec)
	if rec == 0 {
		rule = fmt.Sprintf("resource %s has no cap: its holders took it shared without Permits", r)
	}
	return &coordinator.ValidationError{Field: "Permits", Value: strconv.Itoa(n), Rule: rule}
}

// replyLen is the length of a script's lease reply (see lib.lua's reply).
const replyLen = 12

// scriptReply is a script's lease reply: its status, the lease, and what
// a conflict reports besides (see lib.lua's reply).
type scriptReply struct {
	status  int64
	lease   coordinator.Lease
	holders int // owners holding the resource
	queued  int // waiters queued ahead of the caller
}

// conflict returns the *ConflictError of a conflict reply.
func (rp scriptReply) conflict() *coordinator.ConflictError {
	l := rp.lease
	return &coordinator.ConflictError{Resource: l.Resource, Holder: l.Owner, Token: l.Token, Count: l.Count,
		ExpiresAt: l.ExpiresAt, Remaining: l.Remaining, Mode: l.Mode, Holders: rp.holders, Permits: l.Permits,
		Meta: l.Meta, Queued: rp.queued}
}

// refusal returns the error of a refused acquisition of req (a conflict,
// an upgrade conflict, another cap), or nil.
func (rp scriptReply) refusal(req coordinator.Request) error {
	switch rp.status {
	case statusConflict:
		return rp.conflict()
	case statusUpgrade:
		ce := rp.conflict()
		ce.Upgrade = true
		return ce
	case statusCap:
		return capError(req.Resource, req.Permits, rp.lease.Permits)
	}
	return nil
}

// parseReply reads {status, owner, count, token, acquired_at, expires_at,
// remaining, meta, mode, cap, holders, queued}, or {status} of a free
// resource.
func parseReply(r coordinator.Resource, v []any) (scriptReply, error) {
	if len(v) == 0 {
		return scriptReply{}, fmt.Errorf("empty script reply")
	}
	st, err := toInt(v[0])
	if err != nil {
		return scriptReply{}, fmt.Errorf("script status: %w", err)
	}
	if st == statusFree {
		return scriptReply{status: st}, nil
	}
	if len(v) != replyLen {
		return scriptReply{}, fmt.Errorf("script reply has %d elements, want %d", len(v), replyLen)
	}
	l, err := leaseFrom(r, v[1:6])
	if err != nil {
		return scriptReply{}, err
	}
	var n [5]int64 // remaining, mode, cap, holders, queued
	for i, at := range [5]int{6, 8, 9, 10, 11} {
		if n[i], err = toInt(v[at]); err != nil {
			return scriptReply{}, fmt.Errorf("%s: %w", replyFields[at], err)
		}
	}
	meta, ok := v[7].(string)
	if !ok {
		return scriptReply{}, fmt.Errorf("meta: unexpected %T", v[7])
	}
	l.Meta, l.Permits = meta, int(n[2])
	if n[0] > 0 {
		l.Remaining = time.Duration(n[0]) * time.Millisecond
	}
	if n[1] == 1 {
		l.Mode = coordinator.ModeShared
	}
	return scriptReply{status: st, lease: l, holders: int(n[3]), queued: int(n[4])}, nil
}

// replyFields names the elements of a lease reply, for errors.
var replyFields = [replyLen]string{"status", "owner", "count", "token", "acquired_at", "expires_at",
	"remaining", "meta", "mode", "cap", "holders", "queued"}

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
