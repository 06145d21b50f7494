package features_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// redisBackend is the Redis a scenario runs on: a miniredis of its own
// (TestFeatures), or a real Redis Cluster shared by the scenarios one at
// a time (TestFeaturesOnCluster).
type redisBackend interface {
	// client returns the scenario's client; shutdown closes it.
	client() redis.UniversalClient
	// movableClock reports whether Redis's clock moves (miniredis), or
	// pass moves the data back in time instead (a real Redis).
	movableClock() bool
	// pass makes d pass: on miniredis it moves every key's TTL by d,
	// then TIME to now; on a real Redis it takes d off every TTL and
	// every lease's acquired_at and expires_at, deleting what expires.
	pass(d time.Duration, now time.Time) error
	// commands returns how many commands Redis has run (the step
	// "Redis received no command" compares two readings).
	commands() (int, error)
	// flushAll deletes every key, as a Redis that lost its data.
	flushAll() error
	// shutdown closes the client (and a miniredis).
	shutdown() error
}

// miniBackend is a fresh miniredis whose clock only the scenario moves.
type miniBackend struct {
	mr *miniredis.Miniredis
	c  *redis.Client
}

func newMiniBackend(now time.Time) (redisBackend, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("start miniredis: %w", err)
	}
	mr.SetTime(now)
	return &miniBackend{mr: mr, c: redis.NewClient(&redis.Options{Addr: mr.Addr()})}, nil
}

func (b *miniBackend) client() redis.UniversalClient { return b.c }
func (b *miniBackend) movableClock() bool            { return true }
func (b *miniBackend) pass(d time.Duration, now time.Time) error {
	b.mr.FastForward(d)
	b.mr.SetTime(now)
	return nil
}
func (b *miniBackend) commands() (int, error) { return b.mr.CommandCount(), nil }
func (b *miniBackend) flushAll() error        { b.mr.FlushAll(); return nil }
func (b *miniBackend) shutdown() error {
	err := b.c.Close()
	b.mr.Close()
	return err
}

// clusterBackend is a real Redis, a Cluster or one server, flushed
// before each scenario.
// Its clock is the machine's and cannot be moved: pass moves the data
// back instead (the lease times and TTLs, and the mirror's rows), and
// "expires N from now" allows for the time since the request.
type clusterBackend struct {
	c redis.UniversalClient
	// forEach runs fn on every master: the Cluster's, or the one server
	forEach func(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error
}

// newClusterBackend returns the constructor of backends on the Cluster
// seeded with addrs.
func newClusterBackend(addrs []string) func(time.Time) (redisBackend, error) {
	return func(time.Time) (redisBackend, error) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		b := &clusterBackend{c: cc, forEach: cc.ForEachMaster}
		if err := b.flushAll(); err != nil {
			_ = b.c.Close()
			return nil, err
		}
		return b, nil
	}
}

// newServerBackend returns the constructor of backends on the standalone
// Redis at addr.
func newServerBackend(addr string) func(time.Time) (redisBackend, error) {
	return func(time.Time) (redisBackend, error) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		b := &clusterBackend{c: c, forEach: func(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
			return fn(ctx, c)
		}}
		if err := b.flushAll(); err != nil {
			_ = b.c.Close()
			return nil, err
		}
		return b, nil
	}
}

func (b *clusterBackend) client() redis.UniversalClient { return b.c }
func (b *clusterBackend) movableClock() bool            { return false }
func (b *clusterBackend) shutdown() error               { return b.c.Close() }

// shiftScript takes ARGV[1] ms off the TTL of KEYS[1] (deleting it
// when that is all it had left) and, for a lease hash, off its
// acquired_at and expires_at (and each shared holder's acquired_at:<owner>
// and expires_at:<owner>): as if that time had passed.
var shiftScript = redis.NewScript(`
local d = tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  if ttl <= d then
    redis.call('DEL', KEYS[1])
    return 0
  end
  redis.call('PEXPIRE', KEYS[1], ttl - d)
end
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local f = all[i]
    if f == 'acquired_at' or f == 'expires_at' or f:find('^acquired_at:') or f:find('^expires_at:') then
      redis.call('HSET', KEYS[1], f, string.format('%d', tonumber(all[i + 1]) - d))
    end
  end
end
return 1
`)

// pass shifts every key of every master, one key (one slot) per script.
func (b *clusterBackend) pass(d time.Duration, _ time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return b.forEach(ctx, func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := shiftScript.Run(ctx, b.c, []string{iter.Val()}, d.Milliseconds()).Err(); err != nil {
				return fmt.Errorf("shift %s: %w", iter.Val(), err)
			}
		}
		return iter.Err()
	})
}

func (b *clusterBackend) flushAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.forEach(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	})
}

// notCounted are the commands of go-redis's cluster bookkeeping and of
// the count itself.
var notCounted = map[string]bool{"info": true, "cluster": true, "ping": true, "command": true,
	"hello": true, "client": true, "readonly": true}

// commands sums INFO commandstats of every master, less notCounted.
func (b *clusterBackend) commands() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	total := 0
	err := b.forEach(ctx, func(ctx context.Context, c *redis.Client) error {
		s, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		n := 0
		// cmdstat_evalsha:calls=3,usec=...
		for line := range strings.SplitSeq(s, "\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
			if !ok || notCounted[strings.SplitN(name, "|", 2)[0]] {
				continue
			}
			calls, _, _ := strings.Cut(rest, ",")
			v, err := strconv.Atoi(calls)
			if err != nil {
				return fmt.Errorf("commandstats line %q: %w", line, err)
			}
			n += v
		}
		mu.Lock()
		total += n
		mu.Unlock()
		return nil
	})
	return total, err
}

// fromNow reports whether t is d from Redis's now: exactly on miniredis;
// on a real Redis, between now - slack and now (t was computed by Redis
// when the request ran, at most slack ago).
func (w *world) fromNow(t time.Time, d time.Duration) bool {
	if w.redis.movableClock() {
		return t.Equal(w.now.Add(d))
	}
	const slack = 5 * time.Second
	diff := time.Now().Add(d).Sub(t)
	return diff >= -time.Millisecond && diff <= slack // ms precision
}

// clock is Redis's now as the scenario knows it, for messages.
func (w *world) clock() time.Time {
	if w.redis.movableClock() {
		return w.now
	}
	return time.Now()
}

// lapsed reports whether err is the lease on a real Redis having run out
// by the machine's clock: a short TTL may end before a check reads it.
func (w *world) lapsed(err error, expiresAt time.Time) bool {
	return !w.redis.movableClock() && errors.Is(err, coordinator.ErrNotHeld) && !time.Now().Before(expiresAt)
}
