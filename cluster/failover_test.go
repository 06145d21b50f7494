package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Workload shape of the failover tests.
const (
	workers   = 8
	opTimeout = time.Second
	warmUp    = 500 * time.Millisecond
	cooldown  = time.Second // of workload after the new master is in place
)

// quickCluster makes a Cluster client give up on a dead node fast.
func quickCluster(o *redis.ClusterOptions) {
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, time.Second, time.Second
}

func quickSentinel(o *redis.FailoverOptions) {
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, time.Second, time.Second
}

// clusterFailover runs a workload over resources in every partition with
// the audit mirror following it, fails over the master of partition 0
// with fault (which returns when the new master is in place), and checks
// and reports what the workload and the mirror saw.
func clusterFailover(t *testing.T, fault func(ctx context.Context, master string) error) report {
	ctx := t.Context()
	cc := clusterClient(t, quickCluster)
	s := newStore(t, cc)
	audit := followAudit(t, s)
	c := coordinator.New(s)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	var rs []coordinator.Resource
	for range 3 {
		rs = append(rs, resourcePerPartition(s, "plan")...)
	}
	for i := range rs {
		rs[i].ID += "-" + string(rune('a'+i/s.Layout().Partitions()))
	}
	owner := masterOfSlot(t, ctx, cc)
	slot, err := cc.ClusterKeySlot(ctx, s.Layout().FenceKey(0)).Result()
	if err != nil {
		t.Fatal(err)
	}
	victim := owner[slot]
	affected := func(r coordinator.Resource) bool {
		sl, _ := cc.ClusterKeySlot(context.Background(), s.Layout().FenceKey(s.Layout().Partition(r))).Result()
		return owner[sl] == victim
	}
	// the slot of each partition, computed before the fault
	hit := map[coordinator.Resource]bool{}
	for _, r := range rs {
		hit[r] = affected(r)
	}

	w := startWorkload(c, rs, workers, opTimeout)
	time.Sleep(warmUp) // the workload runs a while before the fault: part of the scenario
	t0 := time.Now()
	if err := fault(ctx, victim); err != nil {
		w.finish()
		t.Fatalf("failover of %s: %v", victim, err)
	}
	recovered := time.Now()
	time.Sleep(cooldown) // and a while after the recovery
	w.finish()
	rep := w.analyse(t, func(r coordinator.Resource) bool { return hit[r] }, t0, recovered)
	t.Logf("master %s failed over in %v; %s", victim, recovered.Sub(t0).Round(time.Millisecond), rep)
	t.Logf("workload errors: %s", w.errorSummary())
	rep.mirrorLag, rep.mirror = audit.catchUp(t, w.ended)
	if rep.mirror.RowsMirrored != rep.mirror.LeasesHeld {
		rep.rows = audit.rowsAndLedger(t)
	}
	t.Logf("the mirror caught up %v after the workload ended: %d leases held, %d missing from the mirror, %d rows left for cleanup",
		rep.mirrorLag.Round(time.Millisecond), rep.mirror.LeasesHeld, rep.mirror.MissingCount, rep.mirror.RowsMirrored-rep.mirror.LeasesHeld)
	if rep.mirror.MissingCount != 0 {
		t.Errorf("%d leases in Redis missing from the mirror after it caught up", rep.mirror.MissingCount)
	}
	if rep.after == 0 {
		t.Fatalf("no acquisition on the failed-over master's partitions after the failover")
	}
	return rep
}

// TestClusterManualFailover: CLUSTER FAILOVER of a master under load (the
// replica catches up first, nothing is lost): operations resume, tokens
// keep increasing, and no lease is lost, so no fenced write is refused.
func TestClusterManualFailover(t *testing.T) {
	cl := env.NeedCluster(t)
	rep := clusterFailover(t, func(ctx context.Context, master string) error {
		_, err := cl.Failover(ctx, master)
		return err
	})
	if rep.rejected != 0 || rep.overlaps != 0 {
		t.Errorf("a manual failover lost leases: %d overlapping holds, %d fenced writes refused", rep.overlaps, rep.rejected)
	}
	// nothing was lost: the mirror holds exactly what Redis holds
	if rep.mirror.RowsMirrored != rep.mirror.LeasesHeld {
		t.Errorf("after a manual failover the mirror has %d rows, Redis %d leases; the rows and their resources' ledger:\n%s",
			rep.mirror.RowsMirrored, rep.mirror.LeasesHeld, strings.Join(rep.rows, "\n"))
	}
}

// TestClusterMasterKilled: a master is killed (SIGKILL) under load; its
// replica takes over after cluster-node-timeout (2s here). Operations on
// its partitions resume, tokens keep increasing, and fencing refuses any
// write of a lease the failover lost. The killed node then rejoins as a
// replica.
func TestClusterMasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a master and waits out cluster-node-timeout")
	}
	cl := env.NeedCluster(t)
	clusterFailover(t, func(ctx context.Context, master string) error {
		ms, err := cl.Masters(ctx)
		if err != nil {
			return err
		}
		var slots [][2]int
		for _, m := range ms {
			if m.Addr == master {
				slots = m.Slots
			}
		}
		nd := cl.Node(master)
		nd.Kill()
		t.Cleanup(func() {
			if err := cl.Rejoin(context.Background(), nd); err != nil {
				t.Errorf("rejoin %s: %v", nd.Addr, err)
			}
		})
		_, err = cl.WaitPromoted(ctx, master, slots)
		return err
	})
}

// TestSentinelMasterKilled: the Sentinel-managed master is killed under
// load; Sentinel promotes the replica and the failover client follows.
// Operations resume, tokens keep increasing, fenced writes stay safe. The
// old master then rejoins as a replica.
func TestSentinelMasterKilled(t *testing.T) {
	sg := env.NeedSentinel(t)
	ctx := t.Context()
	client := sentinelClient(t, quickSentinel)
	s := newStore(t, client)
	audit := followAudit(t, s)
	c := coordinator.New(s)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	rs := resourcePerPartition(s, "project")
	// a release subscription made before the failover
	sub, err := s.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sub.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()

	old, err := sg.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := startWorkload(c, rs, workers, opTimeout)
	time.Sleep(warmUp) // the workload runs a while before the fault: part of the scenario
	t0 := time.Now()
	nd := sg.Node(old)
	nd.Kill()
	defer func() {
		if err := sg.RejoinAsReplica(context.Background(), nd); err != nil {
			t.Errorf("rejoin %s: %v", old, err)
		}
	}()
	nm, err := sg.WaitFailover(ctx, old)
	if err != nil {
		w.finish()
		t.Fatal(err)
	}
	recovered := time.Now()
	time.Sleep(cooldown) // and a while after the recovery
	w.finish()
	rep := w.analyse(t, func(coordinator.Resource) bool { return true }, t0, recovered)
	t.Logf("Sentinel failed over %s -> %s in %v; %s", old, nm, recovered.Sub(t0).Round(time.Millisecond), rep)
	t.Logf("workload errors: %s", w.errorSummary())
	took, mrep := audit.catchUp(t, w.ended)
	t.Logf("the mirror caught up %v after the workload ended: %d leases held, %d missing from the mirror, %d rows left for cleanup",
		took.Round(time.Millisecond), mrep.LeasesHeld, mrep.MissingCount, mrep.RowsMirrored-mrep.LeasesHeld)
	if mrep.MissingCount != 0 {
		t.Errorf("%d leases in Redis missing from the mirror after it caught up", mrep.MissingCount)
	}
	// the subscription follows the failover client to the new master
	tries, took := awaitNotified(t, s, sub, coordinator.Plan("notified"))
	t.Logf("release %d after the failover was notified (%v)", tries, took.Round(time.Millisecond))
	if rep.after == 0 {
		t.Fatal("no acquisition after the failover")
	}
}
