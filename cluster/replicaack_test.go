package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testcluster"
	"github.com/lockcoord/lockcoord/redisstore"
)

// TestFailoverToLaggingReplica: the Sentinel master is cut off from its
// replica (the replica frozen, its link dropped), takes leases the
// replica never sees, and is killed; Sentinel promotes the lagging
// replica. Then:
//   - leases acquired with WithReplicaAck before the cut survive, token
//     and all;
//   - leases acquired without it after the cut are lost: the promoted
//     replica never had them, and its fencing counters lag behind the
//     tokens it gave;
//   - an acquisition with WithReplicaAck after the cut failed with
//     ErrReplicaAck, so its caller never believed it held the lease;
//   - new tokens still exceed the lost ones (the Redis TIME floor), so
//     fencing refuses the lost holders' writes.
func TestFailoverToLaggingReplica(t *testing.T) {
	sg := env.NeedSentinel(t)
	ctx := t.Context()
	client := sentinelClient(t, quickSentinel)
	plain := newStore(t, client)
	// a generous timeout while the replica is connected (a loaded machine
	// may take a while to acknowledge), a short one once it is cut off
	acked := redisstore.New(client, redisstore.WithPrefix(plain.Layout().Prefix()), redisstore.WithReplicaAck(1, 10*time.Second))
	cutOff := redisstore.New(client, redisstore.WithPrefix(plain.Layout().Prefix()), redisstore.WithReplicaAck(1, 100*time.Millisecond))
	id := 0
	next := func() string { id++; return "req" + strconv.Itoa(id) }

	safe := resourcePerPartition(plain, "safe")
	safeTokens := map[coordinator.Resource]uint64{}
	for _, r := range safe {
		safeTokens[r] = need(t)(acked.Acquire(ctx, request(r, "w1", next()))).Token
	}

	oldAddr, err := sg.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	master := sg.Node(oldAddr)
	var replica *testcluster.Node
	for _, nd := range sg.Data {
		if nd != master && nd.Running() {
			replica = nd
		}
	}
	// cut replication: freeze the replica so that it cannot reconnect,
	// and drop the master's link to it
	if err := replica.Freeze(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := replica.Thaw(); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	if n, err := master.Do(ctx, "CLIENT", "KILL", "TYPE", "replica"); err != nil || n != int64(1) {
		t.Fatalf("CLIENT KILL TYPE replica = %v, %v; want 1", n, err)
	}
	lost := resourcePerPartition(plain, "lost")
	lostTokens := map[coordinator.Resource]uint64{}
	for _, r := range lost {
		lostTokens[r] = need(t)(plain.Acquire(ctx, request(r, "w1", next()))).Token
	}
	unacked := coordinator.Plan("unacked")
	_, ackErr := cutOff.Acquire(ctx, request(unacked, "w1", next()))
	if !errors.Is(ackErr, redisstore.ErrReplicaAck) {
		t.Fatalf("Acquire with WithReplicaAck while the replica is cut off = %v, want ErrReplicaAck", ackErr)
	}

	start := time.Now()
	master.Kill()
	resume()
	defer func() {
		if err := sg.RejoinAsReplica(context.Background(), master); err != nil {
			t.Errorf("rejoin %s: %v", master.Addr, err)
		}
	}()
	newAddr, err := sg.WaitFailover(ctx, oldAddr)
	if err != nil {
		t.Fatal(err)
	}
	if newAddr != replica.Addr {
		t.Fatalf("promoted %s, want the replica %s", newAddr, replica.Addr)
	}
	t.Logf("Sentinel promoted the lagging replica %s in %v", newAddr, time.Since(start).Round(time.Millisecond))

	for _, r := range safe {
		l, err := plain.Inspect(ctx, r)
		if err != nil || l.Token != safeTokens[r] || l.Owner != "w1" {
			t.Errorf("acknowledged lease %s after the failover: %+v, %v; want token %d", r, l, err, safeTokens[r])
		}
	}
	if _, err := plain.Inspect(ctx, unacked); !errors.Is(err, coordinator.ErrNotHeld) {
		t.Errorf("unacknowledged acquisition %s after the failover: %v, want ErrNotHeld", unacked, err)
	}
	fence := &fencedRegister{last: map[coordinator.Resource]uint64{}}
	lostCount := 0
	for _, r := range lost {
		fence.write(r, lostTokens[r]) // the lost holder wrote before the failover
		if _, err := plain.Inspect(ctx, r); errors.Is(err, coordinator.ErrNotHeld) {
			lostCount++
		} else {
			t.Errorf("lease %s, taken while the replica was cut off, survived: %v", r, err)
		}
		// the promoted replica's fencing counter lags behind the lost token
		p := plain.Layout().Partition(r)
		v, err := client.Get(ctx, plain.Layout().FenceKey(p)).Result()
		var last uint64
		if err == nil {
			last, _, err = redisstore.ParseFence(v)
		}
		if err != nil || last >= lostTokens[r] {
			t.Errorf("partition %d: fence %d, %v after the failover; want below the lost token %d", p, last, err, lostTokens[r])
		}
		// yet a new holder's token exceeds the lost one: Redis TIME floor
		l := need(t)(plain.Acquire(ctx, request(r, "w2", next())))
		if l.Token <= lostTokens[r] {
			t.Errorf("%s: new token %d not above the lost token %d", r, l.Token, lostTokens[r])
		}
		if !fence.write(r, l.Token) {
			t.Errorf("%s: the new holder's write with token %d was refused", r, l.Token)
		}
		if fence.write(r, lostTokens[r]) {
			t.Errorf("%s: a write of the lost holder (token %d) was accepted after the new holder's", r, lostTokens[r])
		}
	}
	t.Logf("without WithReplicaAck the failover lost %d of %d leases taken while the replica lagged; "+
		"with it, %d of %d acknowledged leases survived and the unacknowledged acquisition failed: %v",
		lostCount, len(lost), len(safe), len(safe), ackErr)
}

// TestReplicaAckCountsTheSlotsReplicas: on Cluster, WAIT goes to the
// master of the partition's slot, which has one replica: one
// acknowledgement comes, two cannot, and the acquisition is then undone.
func TestReplicaAckCountsTheSlotsReplicas(t *testing.T) {
	ctx := t.Context()
	cc := clusterClient(t)
	one := newStore(t, cc, redisstore.WithReplicaAck(1, 5*time.Second))
	two := redisstore.New(cc, redisstore.WithPrefix(one.Layout().Prefix()), redisstore.WithReplicaAck(2, 50*time.Millisecond))
	for i, r := range resourcePerPartition(one, "job") {
		need(t)(one.Acquire(ctx, request(r, "w1", fmt.Sprint("a", i))))
		need(t)(one.Renew(ctx, request(r, "w1", fmt.Sprint("n", i))))
		need(t)(one.Release(ctx, request(r, "w1", fmt.Sprint("r", i))))
		_, err := two.Acquire(ctx, request(r, "w1", fmt.Sprint("b", i)))
		if !errors.Is(err, redisstore.ErrReplicaAck) {
			t.Fatalf("%s: Acquire waiting for 2 replicas of a master with 1 = %v, want ErrReplicaAck", r, err)
		}
		if _, err := one.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Fatalf("%s after an unacknowledged acquisition: %v, want ErrNotHeld", r, err)
		}
	}
}

// TestReplicaAckFollowsAFailover: WithReplicaAck sends each script
// straight to the master of its slot; after a CLUSTER FAILOVER the
// client's slot map is stale, the old master (now a replica) answers
// MOVED, and the store reloads the map and sends the script again to the
// new master, where WAIT counts the new master's replica.
func TestReplicaAckFollowsAFailover(t *testing.T) {
	cl := env.NeedCluster(t)
	ctx := t.Context()
	cc := clusterClient(t)
	s := newStore(t, cc, redisstore.WithReplicaAck(1, 10*time.Second))
	r := resourcePerPartition(s, "job")[0]
	first := need(t)(s.Acquire(ctx, request(r, "w1", "a1")))
	need(t)(s.Release(ctx, request(r, "w1", "r1")))
	slot, err := cc.ClusterKeySlot(ctx, s.Layout().LeaseKey(r)).Result()
	if err != nil {
		t.Fatal(err)
	}
	victim, err := cl.MasterOf(ctx, int(slot))
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := cl.Failover(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	// the client still maps the slot to the old master
	if node, err := cc.MasterForKey(ctx, s.Layout().LeaseKey(r)); err != nil || node.Options().Addr != victim {
		t.Logf("the slot map was already fresh (%v, %v): the redirect path is not exercised", node, err)
	}
	l := need(t)(s.Acquire(ctx, request(r, "w1", "a2")))
	if l.Token <= first.Token {
		t.Fatalf("token %d after the failover, not above %d", l.Token, first.Token)
	}
	need(t)(s.Renew(ctx, request(r, "w1", "n2")))
	if got := need(t)(s.Inspect(ctx, r)); got.Token != l.Token || got.Owner != "w1" {
		t.Fatalf("after the failover: %+v", got)
	}
	// the lease is on the promoted master and its replica
	rep, err := cl.ReplicaOf(ctx, promoted)
	if err != nil {
		t.Fatal(err)
	}
	c := cl.Node(rep).Client(t)
	if err := c.ReadOnly(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, s.Layout().LeaseKey(r)).Result(); err != nil || n != 1 {
		t.Fatalf("lease on %s, the replica of %s: %d, %v", rep, promoted, n, err)
	}
}
