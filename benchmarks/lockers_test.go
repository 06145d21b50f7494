package benchmarks_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// leaseTTL is the TTL of every lease the benchmarks take: long enough
// that none expires during a case.
const leaseTTL = time.Minute

// locker is one library's lock, reduced to what the cases compare.
type locker interface {
	// obtain makes one attempt to take key for owner; ok is false when
	// another owner holds it.
	obtain(ctx context.Context, key, owner string) (h held, ok bool, err error)
	// wait takes key for owner, waiting as the library does (its retry
	// strategy, or lockcoord's Wait) until ctx ends.
	wait(ctx context.Context, key, owner string) (held, error)
}

// held is a taken lock.
type held interface {
	release(ctx context.Context) error
}

// errBusy is what a locker's wait returns when ctx ended first.
var errBusy = errors.New("benchmarks: lock not obtained before the context ended")

// ---- the floor: the least any Redis lock can do -------------------------

var (
	floorAcquire = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])`)
	floorRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
	floorRenew   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
)

// floor is a bare SET NX PX script and a compare-and-delete script, run
// with EVALSHA: two round trips, the physical limit of an
// acquire+release pair. It has no fencing, re-entrancy, audit or waiting.
type floor struct {
	c   *redis.Client
	seq atomic.Uint64
}

type floorHeld struct {
	f          *floor
	key, token string
}

func (f *floor) obtain(ctx context.Context, key, owner string) (held, bool, error) {
	token := owner + "." + strconv.FormatUint(f.seq.Add(1), 36)
	err := floorAcquire.Run(ctx, f.c, []string{key}, token, leaseTTL.Milliseconds()).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return &floorHeld{f, key, token}, true, nil
}

func (f *floor) wait(ctx context.Context, key, owner string) (held, error) {
	return nil, errors.New("floor: no waiting")
}

func (h *floorHeld) release(ctx context.Context) error {
	n, err := floorRelease.Run(ctx, h.f.c, []string{h.key}, h.token).Int()
	if err == nil && n != 1 {
		err = errors.New("floor: released a lock not held")
	}
	return err
}

func (h *floorHeld) renew(ctx context.Context) error {
	n, err := floorRenew.Run(ctx, h.f.c, []string{h.key}, h.token, leaseTTL.Milliseconds()).Int()
	if err == nil && n != 1 {
		err = errors.New("floor: renewed a lock not held")
	}
	return err
}

// ---- lockcoord ------------------------------------------------------------

// lockcoordLocker drives coordinators; with one coordinator every worker
// shares it (one process), with several worker w uses coords[w % n]
// (separate processes).
type lockcoordLocker struct {
	coords []*coordinator.Coordinator
	stores []*redisstore.Store
}

// newLockcoord returns a locker with n coordinators on c (each its own
// store, as separate processes have), closed when tb ends.
func newLockcoord(tb testing.TB, c *redis.Client, n int, opts ...redisstore.Option) *lockcoordLocker {
	tb.Helper()
	prefix := randomPrefix()
	l := &lockcoordLocker{}
	for range n {
		st := redisstore.New(c, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
		co := coordinator.New(st, coordinator.WithDefaultTTL(leaseTTL))
		tb.Cleanup(func() { _ = co.Close(context.Background()) })
		l.coords = append(l.coords, co)
		l.stores = append(l.stores, st)
	}
	return l
}

// coord returns the coordinator of owner "w<n>".
func (l *lockcoordLocker) coord(owner string) *coordinator.Coordinator {
	if len(l.coords) == 1 {
		return l.coords[0]
	}
	n, _ := strconv.Atoi(owner[1:])
	return l.coords[n%len(l.coords)]
}

type lockcoordHeld struct {
	c *coordinator.Coordinator
	r coordinator.Resource
	o string
}

func resource(key string) coordinator.Resource { return coordinator.Resource{Type: "bench", ID: key} }

func (l *lockcoordLocker) obtain(ctx context.Context, key, owner string) (held, bool, error) {
	c, r := l.coord(owner), resource(key)
	_, err := c.Acquire(ctx, r, owner)
	switch {
	case errors.Is(err, coordinator.ErrConflict):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return &lockcoordHeld{c, r, owner}, true, nil
}

func (l *lockcoordLocker) wait(ctx context.Context, key, owner string) (held, error) {
	c, r := l.coord(owner), resource(key)
	_, err := c.Acquire(ctx, r, owner, coordinator.Wait(time.Hour))
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, errBusy
	case err != nil:
		return nil, err
	}
	return &lockcoordHeld{c, r, owner}, nil
}

func (h *lockcoordHeld) release(ctx context.Context) error {
	_, err := h.c.Release(ctx, h.r, h.o)
	return err
}

func (h *lockcoordHeld) renew(ctx context.Context) error {
	_, err := h.c.Renew(ctx, h.r, h.o)
	return err
}

// ---- bsm/redislock ----------------------------------------------------------

// redislockLocker is bsm/redislock; retry makes the retry strategy of one
// waiting Obtain (nil: no waiting).
type redislockLocker struct {
	c     *redislock.Client
	retry func() redislock.RetryStrategy
}

type redislockHeld struct{ l *redislock.Lock }

func (l *redislockLocker) obtain(ctx context.Context, key, owner string) (held, bool, error) {
	lk, err := l.c.Obtain(ctx, key, leaseTTL, nil)
	switch {
	case errors.Is(err, redislock.ErrNotObtained):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return &redislockHeld{lk}, true, nil
}

func (l *redislockLocker) wait(ctx context.Context, key, owner string) (held, error) {
	lk, err := l.c.Obtain(ctx, key, leaseTTL, &redislock.Options{RetryStrategy: l.retry()})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, errBusy
	case err != nil:
		return nil, err
	}
	return &redislockHeld{lk}, nil
}

func (h *redislockHeld) release(ctx context.Context) error { return h.l.Release(ctx) }

func (h *redislockHeld) renew(ctx context.Context) error {
	return h.l.Refresh(ctx, leaseTTL, nil)
}

// ---- go-redsync/redsync -----------------------------------------------------

// redsyncLocker is redsync with a single go-redis pool; opts are the
// mutex options of a waiting lock (nil: redsync's defaults, 32 tries
// 50-250 ms apart).
type redsyncLocker struct {
	rs   *redsync.Redsync
	opts []redsync.Option
}

func newRedsync(c *redis.Client, opts ...redsync.Option) *redsyncLocker {
	return &redsyncLocker{rs: redsync.New(goredis.NewPool(c)), opts: opts}
}

type redsyncHeld struct{ m *redsync.Mutex }

func (l *redsyncLocker) obtain(ctx context.Context, key, owner string) (held, bool, error) {
	m := l.rs.NewMutex(key, redsync.WithExpiry(leaseTTL), redsync.WithTries(1))
	err := m.TryLockContext(ctx)
	var taken *redsync.ErrTaken
	switch {
	case errors.Is(err, redsync.ErrFailed) || errors.As(err, &taken):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return &redsyncHeld{m}, true, nil
}

func (l *redsyncLocker) wait(ctx context.Context, key, owner string) (held, error) {
	m := l.rs.NewMutex(key, append([]redsync.Option{redsync.WithExpiry(leaseTTL)}, l.opts...)...)
	for {
		err := m.LockContext(ctx)
		var taken *redsync.ErrTaken
		switch {
		case err == nil:
			return &redsyncHeld{m}, nil
		case ctx.Err() != nil:
			return nil, errBusy
		case errors.Is(err, redsync.ErrFailed) || errors.As(err, &taken):
			// redsync gave up after its tries: a caller that must have the
			// lock asks again
		default:
			return nil, err
		}
	}
}

func (h *redsyncHeld) release(ctx context.Context) error {
	ok, err := h.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: unlock failed")
	}
	return err
}

func (h *redsyncHeld) renew(ctx context.Context) error {
	ok, err := h.m.ExtendContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: extend failed")
	}
	return err
}
