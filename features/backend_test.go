package features_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cucumber/godog"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// redisBackend is the Redis a scenario runs on: a miniredis of its own
// (TestFeatures), or a real Redis Cluster shared by the scenarios one at
// a time (TestFeaturesOnCluster).
type redisBackend interface {
	// client returns the scenario's client; shutdown closes it.
	client() redis.UniversalClient
	// movableClock reports whether pass can move Redis's clock.
	movableClock() bool
	// pass moves Redis's clock to now (every key's TTL by d, then TIME).
	pass(d time.Duration, now time.Time)
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
func (b *miniBackend) pass(d time.Duration, now time.Time) {
	b.mr.FastForward(d)
	b.mr.SetTime(now)
}
func (b *miniBackend) commands() (int, error) { return b.mr.CommandCount(), nil }
func (b *miniBackend) flushAll() error        { b.mr.FlushAll(); return nil }
func (b *miniBackend) shutdown() error {
	err := b.c.Close()
	b.mr.Close()
	return err
}

// clusterBackend is a real Redis Cluster, flushed before each scenario.
// Its clock is the machine's: it cannot move, so the scenarios that make
// time pass are skipped, and "expires N from now" allows for the time the
// scenario took since the request.
type clusterBackend struct {
	c *redis.ClusterClient
}

// newClusterBackend returns the constructor of backends on the Cluster
// seeded with addrs.
func newClusterBackend(addrs []string) func(time.Time) (redisBackend, error) {
	return func(time.Time) (redisBackend, error) {
		b := &clusterBackend{c: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})}
		if err := b.flushAll(); err != nil {
			_ = b.c.Close()
			return nil, err
		}
		return b, nil
	}
}

func (b *clusterBackend) client() redis.UniversalClient { return b.c }
func (b *clusterBackend) movableClock() bool            { return false }
func (b *clusterBackend) pass(time.Duration, time.Time) {}
func (b *clusterBackend) shutdown() error               { return b.c.Close() }

func (b *clusterBackend) flushAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
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
	err := b.c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
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

// errNeedsClock skips a scenario that moves Redis's clock on a backend
// whose clock cannot move.
var errNeedsClock = fmt.Errorf("%w: the scenario moves Redis's clock, which only miniredis can do", godog.ErrSkip)

var passStep = regexp.MustCompile(step(`{dur} pass(?:es)?(?: while the leases are kept alive)?`))

// needsClock reports whether a scenario has a step that moves the clock.
func needsClock(sc *godog.Scenario) bool {
	for _, st := range sc.Steps {
		if passStep.MatchString(st.Text) {
			return true
		}
	}
	return false
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
