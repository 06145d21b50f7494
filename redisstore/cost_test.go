package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// commands returns the commands a real Redis ran for fn, by name
// (INFO commandstats after CONFIG RESETSTAT), but for the reset itself:
// the scripts' calls and the redis.call commands they ran.
func commands(t *testing.T, b *backend, fn func()) map[string]int {
	t.Helper()
	ctx := context.Background()
	if err := b.client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	fn()
	info, err := b.client.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("commandstats line %q", l)
		}
		switch name {
		case "config|resetstat", "config", "info", "ping", "hello", "client|setinfo":
		default:
			out[name] = n
		}
	}
	return out
}

// total is the number of commands in c run inside the scripts or on
// their own, the scripts' calls (EVALSHA, EVAL) not counted, nor the
// expiry index's ZREMRANGEBYSCORE, which one fresh hold in ten runs
// (those whose token ends in 0: see core.lua's expiry_prune).
func total(c map[string]int) int {
	n := 0
	for k, v := range c {
		if k != "evalsha" && k != "eval" && k != "zremrangebyscore" {
			n += v
		}
	}
	return n
}

// prunes reports an error when c holds more ZREMRANGEBYSCORE than fresh
// holds were taken.
func prunes(t *testing.T, name string, c map[string]int, fresh int) {
	t.Helper()
	if c["zremrangebyscore"] > fresh {
		t.Errorf("%s: %d ZREMRANGEBYSCORE for %d fresh holds", name, c["zremrangebyscore"], fresh)
	}
}

// TestCommandCounts: what an acquire/release pair costs in commands run
// inside the scripts (INFO commandstats on a server of the test's own),
// for each mode. Before shared leases an exclusive pair cost 17 (acquire
// HMGET TIME SET XADD HSET PEXPIRE SADD PTTL, release GET HMGET TIME XADD
// DEL SREM SET GET PUBLISH); HGETALL replaced HMGET at no cost, and the
// fair queue added one GET to a fresh acquisition (a resource with
// waiters queued goes to the first of them): 18. A shared or counted
// pair whose holder is alone costs the same; beside another holder the
// release keeps the hash (HDEL PEXPIRE for DEL): 19. The expiry index
// (expiry events, expire.lua) adds a ZADD to the acquisition and a ZREM
// to the release: 20 and 21, and the acquisition's ZREMRANGEBYSCORE that
// drops members a minute overdue (nobody sweeps their partition) in one
// acquisition in ten (not counted here). The fast paths of acquire.lua
// and release.lua (the exclusive pair) run the same commands as the
// general one.
func TestCommandCounts(t *testing.T) {
	b := newRealBackend(t)
	ctx := t.Context()
	s := b.newStore(t)
	var ids reqIDs
	pair := func(r coordinator.Resource, owner string, mode coordinator.Mode, permits int) func() {
		return func() {
			req := request(r, owner, ids.next(), time.Minute)
			req.Mode, req.Permits = mode, permits
			lease(t)(s.Acquire(ctx, req))
			lease(t)(s.Release(ctx, request(r, owner, ids.next(), 0)))
		}
	}
	r := coordinator.Plan("cost")
	pair(r, "w1", coordinator.ModeExclusive, 0)() // the owner index exists from now on
	other := coordinator.Plan("cost-other")
	lease(t)(s.Acquire(ctx, sharedReq(other, "w2", ids.next(), time.Hour, 0)))
	pair(other, "w1", coordinator.ModeShared, 0)()
	for _, tc := range []struct {
		name string
		fn   func()
		want int
	}{
		{"exclusive pair", pair(r, "w1", coordinator.ModeExclusive, 0), 20},
		{"shared pair, alone", pair(r, "w1", coordinator.ModeShared, 0), 20},
		{"counted pair, alone", pair(r, "w1", coordinator.ModeShared, 4), 20},
		{"shared pair beside a holder", pair(other, "w1", coordinator.ModeShared, 0), 21},
	} {
		c := commands(t, b, tc.fn)
		t.Logf("%s: %d commands %v", tc.name, total(c), c)
		prunes(t, tc.name, c, 1)
		if total(c) != tc.want {
			t.Errorf("%s: %d commands %v, want %d", tc.name, total(c), c, tc.want)
		}
	}
}

// TestAcquireAllCost: what AcquireAll of two fresh exclusive claims costs
// (INFO commandstats): in one partition, one script (acquireall.lua)
// that decides both claims (HGETALL TIME GET each) and then takes them
// (10 commands each, the expiry index's ZADD included, its sampled
// ZREMRANGEBYSCORE not counted), in one round trip; across partitions, a
// SET NX of the attempt's nonce and one acquire.lua per claim (10
// commands each), in three round trips.
func TestAcquireAllCost(t *testing.T) {
	b := newRealBackend(t)
	ctx := t.Context()
	s := b.newStore(t, redisstore.WithPartitions(4))
	var ids reqIDs
	one := colocated(t, s, "all-x", 2)
	spreadRs := spread(t, s, "all-s", 2)
	take := func(rs []coordinator.Resource) func() {
		return func() {
			id := ids.next()
			must[[]coordinator.Lease](t)(s.AcquireAll(ctx, allReqs("w1", id, rs...)))
		}
	}
	// the owner index of every partition exists from now on
	for _, rs := range [][]coordinator.Resource{one, spreadRs} {
		take(rs)()
		for _, r := range rs {
			lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
		}
	}
	for _, tc := range []struct {
		name  string
		rs    []coordinator.Resource
		want  int
		calls int // scripts run
	}{
		{"AcquireAll of 2 in one partition", one, 26, 1},
		{"AcquireAll of 2 across partitions", spreadRs, 21, 2},
	} {
		c := commands(t, b, take(tc.rs))
		t.Logf("%s: %d commands %v", tc.name, total(c), c)
		prunes(t, tc.name, c, 2)
		if total(c) != tc.want || c["evalsha"] != tc.calls {
			t.Errorf("%s: %d commands and %d scripts %v, want %d and %d", tc.name, total(c), c["evalsha"], c, tc.want, tc.calls)
		}
	}
}
