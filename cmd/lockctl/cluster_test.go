package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testcluster"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// startClusterAndSentinel starts a 3-master Cluster with a replica each
// and a Sentinel group, concurrently, stopped when t ends; it skips t
// without the Redis binaries (fails under CI=true).
func startClusterAndSentinel(t *testing.T) (*testcluster.Cluster, *testcluster.Sentinel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var env testcluster.Env
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		env.Cluster, env.ClusterErr = testcluster.StartCluster(ctx, testcluster.ClusterConfig{})
	}()
	go func() {
		defer wg.Done()
		env.Sentinel, env.SentinelErr = testcluster.StartSentinel(ctx, testcluster.SentinelConfig{})
	}()
	wg.Wait()
	t.Cleanup(env.Close)
	return env.NeedCluster(t), env.NeedSentinel(t)
}

// onePerPartition returns one resource of type typ in each partition of
// the default 16, in partition order.
func onePerPartition(typ string) []coordinator.Resource {
	s := redisstore.New(nil)
	out := make([]coordinator.Resource, s.Layout().Partitions())
	for i, found := 0, 0; found < len(out); i++ {
		r := coordinator.Resource{Type: typ, ID: strconv.Itoa(i)}
		if p := s.Layout().Partition(r); out[p].Type == "" {
			out[p] = r
			found++
		}
	}
	return out
}

// TestClusterAndSentinelURLs: lockctl on a real Cluster (the go-redis
// form redis://host:port?addr=host:port&addr=...) and a real Sentinel
// group (redis+sentinel://host:port?master_name=...&addr=...): leases in
// every partition, list and ReleaseAll across masters, the mirror and
// diagnostics, and partitions showing which master holds which partition.
func TestClusterAndSentinelURLs(t *testing.T) {
	cl, sg := startClusterAndSentinel(t)
	ctx := t.Context()
	addrs := cl.Addrs()
	clusterURL := "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:3], "&addr=")
	sas := sg.SentinelAddrs()
	sentinelURL := "redis+sentinel://" + sas[0] + "?master_name=" + sg.MasterName() + "&addr=" + strings.Join(sas[1:], "&addr=")
	rs := onePerPartition("plan")

	for _, tc := range []struct{ name, url string }{{"cluster", clusterURL}, {"sentinel", sentinelURL}} {
		t.Run(tc.name, func(t *testing.T) {
			db := testpg.New(t)
			c := newCLI(t, tc.url)
			c.env["LOCKCOORD_PREFIX"] = "lockctl-" + testutil.RandomHex(4)
			c.env["LOCKCOORD_DATABASE_URL"] = db.URL
			c.run("migrate").want(t, ExitOK)
			for _, r := range rs {
				c.run("acquire", r.String(), "--owner", "w1", "--ttl", "5m").want(t, ExitOK)
			}
			c.run("acquire", rs[0].String(), "--owner", "w2").want(t, ExitConflict)
			leases := jsonLines[map[string]any](t, c.run("list", "--json").want(t, ExitOK))
			if len(leases) != len(rs) {
				t.Fatalf("list shows %d leases, want %d", len(leases), len(rs))
			}
			var ps []partitionInfo
			c.run("partitions", "--json").want(t, ExitOK).json(t, &ps)
			if len(ps) != len(rs) {
				t.Fatalf("partitions: %d rows", len(ps))
			}
			nodes := map[string]bool{}
			for _, p := range ps {
				nodes[p.Node] = true
				if p.Fence == 0 || p.Events != 1 || len(p.Replicas) != 1 {
					t.Fatalf("partition %+v: want a fencing token, 1 event, 1 replica", p)
				}
				var want string
				var err error
				if tc.name == "cluster" {
					want, err = cl.MasterOf(ctx, p.Slot)
				} else {
					want, err = sg.MasterAddr(ctx)
					if p.Slot != -1 {
						t.Fatalf("partition %+v has a slot outside a Cluster", p)
					}
				}
				if err != nil || p.Node != want {
					t.Fatalf("partition %d is on %s, want %s (%v)", p.Partition, p.Node, want, err)
				}
				if rep, err := replicaOf(ctx, cl, sg, tc.name, want); err != nil || len(p.Replicas) != 1 || p.Replicas[0] != rep {
					t.Fatalf("partition %d: replicas %v, want [%s] (%v)", p.Partition, p.Replicas, rep, err)
				}
			}
			wantNodes := map[string]int{"cluster": 3, "sentinel": 1}[tc.name]
			if len(nodes) != wantNodes {
				t.Fatalf("partitions on %d masters, want %d: %v", len(nodes), wantNodes, nodes)
			}
			table := c.run("partitions").want(t, ExitOK).stdout
			if !strings.Contains(table, fmt.Sprintf("16 partitions on %d master(s):", wantNodes)) ||
				!strings.HasPrefix(table, "PARTITION  SLOT") {
				t.Fatalf("partitions table:\n%s", table)
			}
			t.Logf("lockctl partitions on %s:\n%s", tc.name, table)

			r := c.run("mirror", "--once").want(t, ExitOK)
			if r.stdout != fmt.Sprintf("applied %d events\n", len(rs)) {
				t.Fatalf("mirror --once: %q", r.stdout)
			}
			var rep map[string]any
			c.run("diagnostics", "--json").want(t, ExitOK).json(t, &rep)
			if rep["healthy"] != true || rep["leases_held"].(float64) != float64(len(rs)) || rep["rows_mirrored"].(float64) != float64(len(rs)) {
				t.Fatalf("diagnostics %v", rep)
			}

			for _, r := range rs {
				c.run("release", r.String(), "--owner", "w1").want(t, ExitOK)
			}
			leases = jsonLines[map[string]any](t, c.run("list", "--json").want(t, ExitOK))
			if len(leases) != 0 {
				t.Fatalf("%d leases left after release", len(leases))
			}
			c.run("mirror", "--once").want(t, ExitOK)
			if n := db.Count(t, "SELECT count(*) FROM locks"); n != 0 {
				t.Fatalf("%d rows mirrored after release", n)
			}
		})
	}
}

func replicaOf(ctx context.Context, cl *testcluster.Cluster, sg *testcluster.Sentinel, kind, master string) (string, error) {
	if kind == "cluster" {
		return cl.ReplicaOf(ctx, master)
	}
	for _, nd := range sg.Data {
		if nd.Addr != master && nd.Running() {
			return nd.Addr, nil
		}
	}
	return "", errors.New("no replica")
}
