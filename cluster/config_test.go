package cluster_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/redisstore"
)

// TestConfigOfEveryMaster: issue 12 item 1 on a Cluster. The store reads
// the maxmemory-policy of every master, and refuses when one of them can
// evict leases.
func TestConfigOfEveryMaster(t *testing.T) {
	cl := env.NeedCluster(t)
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc)
	masters, err := cl.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	scs, err := s.ServerConfigs(ctx)
	if err != nil || len(scs) != len(masters) {
		t.Fatalf("ServerConfigs = %+v, %v; want one per master (%d)", scs, err, len(masters))
	}
	var addrs []string
	for _, sc := range scs {
		if sc.Policy != redisstore.SafePolicy || sc.Version == "" {
			t.Errorf("master %s: %+v", sc.Addr, sc)
		}
		addrs = append(addrs, sc.Addr)
	}
	if err := s.CheckConfig(ctx); err != nil {
		t.Fatal(err)
	}
	// one master set to evict: the store names it
	var evicting string
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if c.Options().Addr == addrs[len(addrs)-1] {
			evicting = c.Options().Addr
			return c.ConfigSet(ctx, "maxmemory-policy", "volatile-ttl").Err()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			return c.ConfigSet(ctx, "maxmemory-policy", redisstore.SafePolicy).Err()
		})
	})
	err = s.CheckConfig(ctx)
	ce, ok := errors.AsType[*redisstore.ConfigError](err)
	if !ok || ce.Addr != evicting || ce.Value != "volatile-ttl" || !slices.Contains(addrs, ce.Addr) {
		t.Fatalf("CheckConfig with %s on volatile-ttl: %v", evicting, err)
	}
}
