package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// storeCalls are the calls of a store that check the Redis configuration
// before they write (everyCall's, without CheckPartitions and Releases).
var storeCalls = []string{"Acquire", "Renew", "Release", "Inspect", "ReleaseAll", "ForceRelease"}

// evictingPolicies are the maxmemory-policy values that can evict a key.
var evictingPolicies = []string{"allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-lfu", "volatile-lfu",
	"allkeys-random", "volatile-random"}

// TestEvictingPolicyIsRefused: issue 12 item 1. A store refuses every
// call on a Redis whose maxmemory-policy can evict a lease, before it
// writes anything, with an error naming the setting, its value and the
// way out; WithEvictionRisk accepts the risk; noeviction runs.
func TestEvictingPolicyIsRefused(t *testing.T) {
	srv := testredis.Start(t, "--maxmemory-policy", "allkeys-lru")
	c := srv.Client(t)
	ctx := t.Context()
	for _, policy := range evictingPolicies {
		must[string](t)(c.ConfigSet(ctx, "maxmemory-policy", policy).Result())
		s := redisstore.New(c, redisstore.WithPrefix(randomPrefix()))
		calls := everyCall(ctx, s)
		for _, call := range storeCalls {
			err := calls[call]
			ce, ok := errors.AsType[*redisstore.ConfigError](err)
			if !errors.Is(err, redisstore.ErrUnsafeConfig) || !ok || ce.Setting != "maxmemory-policy" || ce.Value != policy || ce.Addr != srv.Addr {
				t.Errorf("%s under %s: %v, want a *ConfigError naming maxmemory-policy %s", call, policy, err, policy)
				continue
			}
			for _, part := range []string{srv.Addr, policy, "noeviction", "WithEvictionRisk", "second owner"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%s under %s: %q does not mention %q", call, policy, err, part)
				}
			}
		}
		// CheckPartitions (everyCall's, the mirror's) records the count
		if keys := must[[]string](t)(c.Keys(ctx, "*").Result()); len(keys) > 1 || len(keys) == 1 && keys[0] != s.Layout().ConfigKey() {
			t.Fatalf("a refused store wrote %q under %s", keys, policy)
		}
		risky := redisstore.New(c, redisstore.WithPrefix(randomPrefix()), redisstore.WithEvictionRisk())
		lease(t)(risky.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute)))
		if err := risky.CheckConfig(ctx); !errors.Is(err, redisstore.ErrUnsafeConfig) {
			t.Errorf("CheckConfig under %s with WithEvictionRisk: %v, want ErrUnsafeConfig all the same", policy, err)
		}
		must[string](t)(c.FlushAll(ctx).Result())
	}
	must[string](t)(c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Result())
	s := redisstore.New(c, redisstore.WithPrefix(randomPrefix()))
	lease(t)(s.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute)))
	scs := must[[]redisstore.ServerConfig](t)(s.ServerConfigs(ctx))
	if len(scs) != 1 || scs[0].Policy != "noeviction" || scs[0].PolicyFrom != redisstore.FromConfig || scs[0].Version == "" ||
		scs[0].Persistence() != "none" || scs[0].Problem() != "" {
		t.Fatalf("ServerConfigs = %+v (persistence %s)", scs, scs[0].Persistence())
	}
}

// TestEvictionHandsALeaseToASecondOwner is the reproduction, with
// its figures: Redis as a cache (maxmemory 20mb, allkeys-lru), 2,000
// leases held, 60,000 cache keys written. A store that accepts the risk
// (as every store did before the check) loses the leases to eviction and
// a second owner gets the resources; a store without the option refuses
// before it writes.
func TestEvictionHandsALeaseToASecondOwner(t *testing.T) {
	srv := testredis.Start(t, "--maxmemory", "20mb", "--maxmemory-policy", "allkeys-lru")
	c := srv.Client(t)
	ctx := t.Context()
	const leases, cacheKeys = 2000, 60000
	first := redisstore.New(c, redisstore.WithPrefix("evict"), redisstore.WithEvictionRisk())
	for i := range leases {
		lease(t)(first.Acquire(ctx, request(coordinator.Plan(strconv.Itoa(i)), "first", "a"+strconv.Itoa(i), time.Hour)))
	}
	value := strings.Repeat("x", 1024)
	for i := 0; i < cacheKeys; i += 1000 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < i+1000; j++ {
				p.Set(ctx, "cache:"+strconv.Itoa(j), value, 0)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	evicted := 0
	for i := range leases {
		if c.Exists(ctx, first.Layout().LeaseKey(coordinator.Plan(strconv.Itoa(i)))).Val() == 0 {
			evicted++
		}
	}
	fences, streams := 0, 0
	for p := range first.Layout().Partitions() {
		fences += int(c.Exists(ctx, first.Layout().FenceKey(p)).Val())
		streams += int(c.Exists(ctx, first.Layout().StreamKey(p)).Val())
	}
	t.Logf("left of %d partitions: %d fence keys, %d event streams; the partition count key: %d",
		first.Layout().Partitions(), fences, streams, c.Exists(ctx, first.Layout().ConfigKey()).Val())
	second := redisstore.New(c, redisstore.WithPrefix("evict"), redisstore.WithEvictionRisk())
	granted := 0
	for i := range leases {
		if _, err := second.Acquire(ctx, request(coordinator.Plan(strconv.Itoa(i)), "second", "b"+strconv.Itoa(i), time.Hour)); err == nil {
			granted++
		}
	}
	t.Logf("allkeys-lru, maxmemory 20mb: %d leases held, %d cache keys written: %d leases evicted, %d granted to a second owner while the first held them",
		leases, cacheKeys, evicted, granted)
	// the cache keys go on evicting while the second owner acquires
	if evicted == 0 || granted < evicted {
		t.Fatalf("%d evicted, %d granted to the second owner: the reproduction did not reproduce", evicted, granted)
	}
	guarded := redisstore.New(c, redisstore.WithPrefix("guarded"))
	_, err := guarded.Acquire(ctx, request(coordinator.Plan("0"), "third", "c", time.Hour))
	if !errors.Is(err, redisstore.ErrUnsafeConfig) {
		t.Fatalf("a store without WithEvictionRisk: %v, want ErrUnsafeConfig", err)
	}
	if n := must[[]string](t)(c.Keys(ctx, "guarded:*").Result()); len(n) != 0 {
		t.Fatalf("the refused store wrote %q", n)
	}
}

// aclUser creates a Redis user with rules and returns a client of it.
func aclUser(t *testing.T, srv *testredis.Server, name string, rules ...string) *redis.Client {
	t.Helper()
	args := []any{"ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all"}
	for _, r := range rules {
		args = append(args, r)
	}
	if _, err := srv.Do(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: name, Password: "pw"})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestPolicyReadWithoutConfigPermission: an ACL user without CONFIG reads
// the policy from INFO; one without INFO either is refused with an error
// that says so and how to fix it, unless WithEvictionRisk.
func TestPolicyReadWithoutConfigPermission(t *testing.T) {
	srv := testredis.Start(t)
	ctx := t.Context()
	noConfig := aclUser(t, srv, "noconfig", "-config")
	s := redisstore.New(noConfig, redisstore.WithPrefix(randomPrefix()))
	lease(t)(s.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute)))
	sc := must[[]redisstore.ServerConfig](t)(s.ServerConfigs(ctx))[0]
	if sc.Policy != "noeviction" || sc.PolicyFrom != redisstore.FromInfo || sc.Persistence() != "unknown" || sc.ConfigErr != "" {
		t.Fatalf("as a user without CONFIG: %+v", sc)
	}
	if _, err := srv.Do(ctx, "CONFIG", "SET", "maxmemory-policy", "volatile-ttl"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Do(ctx, "CONFIG", "SET", "appendonly", "yes"); err != nil {
		t.Fatal(err)
	}
	later := redisstore.New(noConfig, redisstore.WithPrefix(randomPrefix()))
	if _, err := later.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute)); !errors.Is(err, redisstore.ErrUnsafeConfig) ||
		!strings.Contains(err.Error(), "volatile-ttl") || !strings.Contains(err.Error(), "the only keys with one") {
		t.Fatalf("volatile-ttl read from INFO: %v, want ErrUnsafeConfig", err)
	}
	if sc := must[[]redisstore.ServerConfig](t)(later.ServerConfigs(ctx))[0]; sc.Persistence() != "aof, rdb unknown" {
		t.Errorf("persistence from INFO with AOF: %q", sc.Persistence())
	}

	blind := aclUser(t, srv, "blind", "-config", "-info")
	for _, s := range []*redisstore.Store{redisstore.New(blind, redisstore.WithPrefix(randomPrefix()))} {
		_, err := s.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute))
		ce, ok := errors.AsType[*redisstore.ConfigError](err)
		if !ok || ce.Value != "" || !errors.Is(err, redisstore.ErrUnsafeConfig) {
			t.Fatalf("a user without CONFIG and INFO: %v, want a *ConfigError without a value", err)
		}
		for _, part := range []string{"unknown", "NOPERM", "+info", "+config|get", "WithEvictionRisk"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%q does not mention %q", err, part)
			}
		}
		sc := must[[]redisstore.ServerConfig](t)(s.ServerConfigs(ctx))[0]
		if p := sc.Problem(); !strings.Contains(p, "cannot read maxmemory-policy") || !strings.Contains(p, "NOPERM") {
			t.Errorf("Problem = %q", p)
		}
	}
	risky := redisstore.New(blind, redisstore.WithPrefix(randomPrefix()), redisstore.WithEvictionRisk())
	lease(t)(risky.Acquire(ctx, request(coordinator.Plan("1"), "w1", "a", time.Minute)))

	// a user that may read the count but not record it
	readOnly := aclUser(t, srv, "reader", "-set")
	err := redisstore.New(readOnly, redisstore.WithPrefix(randomPrefix())).CheckPartitions(ctx)
	if err == nil || !strings.Contains(err.Error(), "record the partition count") || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("CheckPartitions without SET: %v", err)
	}
}

// TestConfigOnMiniredis: miniredis has neither CONFIG nor INFO memory and
// never evicts; the store knows it by HELLO, in either protocol.
func TestConfigOnMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	for _, proto := range []int{0, 2, 3} {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: proto})
		t.Cleanup(func() { _ = c.Close() })
		s := redisstore.New(c)
		if err := s.CheckConfig(t.Context()); err != nil {
			t.Fatalf("protocol %d: %v", proto, err)
		}
		sc := must[[]redisstore.ServerConfig](t)(s.ServerConfigs(t.Context()))[0]
		if sc.Policy != "noeviction" || sc.PolicyFrom != redisstore.FromMiniredis || sc.ConfigErr != "" || sc.InfoErr != "" {
			t.Fatalf("protocol %d: %+v", proto, sc)
		}
	}
}

// TestServerConfigsFailures: an unreachable server is an error, not an
// unsafe configuration; a store with a bad option returns its error.
func TestServerConfigsFailures(t *testing.T) {
	mr := miniredis.RunT(t)
	c := quickClient(t, mr.Addr(), 0)
	mr.Close()
	s := redisstore.New(c)
	if _, err := s.ServerConfigs(t.Context()); err == nil || errors.Is(err, redisstore.ErrUnsafeConfig) {
		t.Fatalf("ServerConfigs of a stopped server: %v", err)
	}
	if err := s.CheckConfig(t.Context()); err == nil || errors.Is(err, redisstore.ErrUnsafeConfig) {
		t.Fatalf("CheckConfig of a stopped server: %v", err)
	}
	if _, err := s.ReadPartitions(t.Context()); !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("ReadPartitions of a stopped server: %v", err)
	}
	bad := redisstore.New(c, redisstore.WithPartitions(0))
	for name, err := range map[string]error{"ServerConfigs": second(bad.ServerConfigs(t.Context())), "CheckConfig": bad.CheckConfig(t.Context()),
		"ReadPartitions": second(bad.ReadPartitions(t.Context()))} {
		if !errors.Is(err, coordinator.ErrInvalid) {
			t.Errorf("%s with a bad option: %v", name, err)
		}
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	t.Cleanup(func() { _ = ring.Close() })
	if _, err := redisstore.New(ring).ServerConfigs(t.Context()); err == nil {
		t.Fatal("ServerConfigs through a ring of a closed port: no error")
	}
}

func second[T any](_ T, err error) error { return err }

// TestConfigMetric: lockcoord_redis_config_unsafe follows the policy at
// each scrape.
func TestConfigMetric(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	reg := prometheus.NewPedanticRegistry()
	s := redisstore.New(c, redisstore.WithMetrics(reg))
	redisstore.New(c, redisstore.WithMetrics(reg), redisstore.WithMetrics(nil)) // the gauge already there: kept
	want := func(v int) string {
		return fmt.Sprintf(`# HELP lockcoord_redis_config_unsafe 1 when the Redis server's configuration can lose leases (a maxmemory-policy other than noeviction, or one that cannot be read), 0 when safe.
# TYPE lockcoord_redis_config_unsafe gauge
lockcoord_redis_config_unsafe{addr=%q} %d
`, srv.Addr, v)
	}
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want(0)), "lockcoord_redis_config_unsafe"); err != nil {
		t.Fatal(err)
	}
	must[string](t)(c.ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lfu").Result())
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want(1)), "lockcoord_redis_config_unsafe"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckConfig(t.Context()); !errors.Is(err, redisstore.ErrUnsafeConfig) {
		t.Fatal(err)
	}

	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockcoord_redis_config_unsafe", Help: "another"}))
	bad := redisstore.New(c, redisstore.WithMetrics(clash))
	if err := bad.CheckConfig(context.Background()); !errors.Is(err, coordinator.ErrInvalid) || !strings.Contains(err.Error(), "WithMetrics") {
		t.Fatalf("WithMetrics on a clashing registry: %v", err)
	}
}
