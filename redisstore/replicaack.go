package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// ErrReplicaAck reports that fewer replicas than WithReplicaAck asks for
// acknowledged a change within its timeout (or that WAIT failed): a
// failover now could lose the change. An acquisition is undone before the
// error is returned; a renewal is kept on the master (see WithReplicaAck).
var ErrReplicaAck = errors.New("redisstore: replicas did not acknowledge")

// How often a script sent straight to a Cluster node is sent again after
// MOVED, ASK, TRYAGAIN or CLUSTERDOWN (a failover or resharding under
// way), and the first pause before doing so (doubled each time).
const (
	ackRedirects = 5
	ackBackoff   = 25 * time.Millisecond
	// undoTimeout bounds the release that undoes an unacknowledged
	// acquisition.
	undoTimeout = 5 * time.Second
)

// ackable reports whether WAIT can follow a script on client's
// connections: it needs a connection of its own to the master, which
// go-redis gives for a *redis.Client (standalone or Sentinel) and, per
// slot, a *redis.ClusterClient.
func ackable(client redis.UniversalClient) bool {
	switch client.(type) {
	case *redis.Client, *redis.ClusterClient:
		return true
	}
	return false
}

// eval runs script on keys, which share a slot, with args (see evalCmd).
func (s *Store) eval(ctx context.Context, script *redis.Script, keys []string, wrote func(status int64) bool,
	args ...any) (v []any, ackErr, err error) {
	cmd := evalArgs(script, len(keys), len(args))
	for _, k := range keys {
		cmd = append(cmd, k)
	}
	return s.evalCmd(ctx, script, append(cmd, args...), wrote)
}

// evalCmd runs cmd, an EVALSHA of script built by evalArgs, and returns
// its reply. With WithReplicaAck, and when wrote says the reply is of a
// change, it then waits with WAIT on the same connection (WAIT counts the
// replicas that have every write of its connection) and reports a
// shortfall as ackErr, wrapping ErrReplicaAck.
func (s *Store) evalCmd(ctx context.Context, script *redis.Script, cmd []any, wrote func(status int64) bool) (v []any, ackErr, err error) {
	if s.ackReplicas == 0 {
		v, err = s.runScript(ctx, script, cmd).Slice()
		s.refreshOnFailure(err)
		return v, nil, err
	}
	for attempt := 0; ; attempt++ {
		v, ackErr, err = s.evalAcked(ctx, script, cmd, wrote)
		s.refreshOnFailure(err)
		if err == nil || !redirected(err) || attempt == ackRedirects {
			return v, ackErr, err
		}
		// the slot map is stale: let go-redis read it again, then retry
		if cc, ok := s.client.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		t := time.NewTimer(ackBackoff << attempt)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("%w (after %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Script statuses that changed the lease (see the scripts' headers): what
// WithReplicaAck waits for.
func acquireWrote(st int64) bool { return st == 1 || st == 2 }
func renewWrote(st int64) bool   { return st == 1 }

// redirected reports a Cluster error that a retry on a fresh slot map
// may not have.
func redirected(err error) bool {
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	return moved || ask || redis.IsTryAgainError(err) || redis.IsClusterDownError(err)
}

func (s *Store) evalAcked(ctx context.Context, script *redis.Script, cmd []any, wrote func(int64) bool) (v []any, ackErr, err error) {
	var conn *redis.Conn
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		key, _ := cmd[3].(string) // the first key: evalArgs's KEYS[1]
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		conn = node.Conn()
	case *redis.Client:
		conn = c.Conn()
	default: // refused by WithReplicaAck
		return nil, nil, fmt.Errorf("redisstore: WithReplicaAck on a %T", s.client)
	}
	defer func() { _ = conn.Close() }()
	v, err = runScript(ctx, conn, script, cmd).Slice()
	if err != nil || len(v) == 0 {
		return v, nil, err
	}
	if st, err := toInt(v[0]); err != nil || !wrote(st) {
		return v, nil, nil // a reply parseReply rejects, or no change to wait for
	}
	n, err := conn.Wait(ctx, s.ackReplicas, s.ackTimeout).Result()
	switch {
	case err != nil:
		return v, fmt.Errorf("%w: WAIT %d %d: %w", ErrReplicaAck, s.ackReplicas, s.ackTimeout.Milliseconds(), err), nil
	case n < int64(s.ackReplicas):
		return v, fmt.Errorf("%w: %d of %d replicas within %v", ErrReplicaAck, n, s.ackReplicas, s.ackTimeout), nil
	}
	return v, nil, nil
}

// unack undoes an acquisition the replicas did not acknowledge: it drops
// the hold it added (the lease itself when it was new), so that the
// caller, who gets an error, holds nothing it does not know of.
func (s *Store) unack(ctx context.Context, req coordinator.Request, ackErr error) error {
	undo := coordinator.Request{Resource: req.Resource, Owner: req.Owner, RequestID: req.RequestID + ".unacked"}
	// undo even when the caller's context ended while WAIT ran
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if _, err := s.release(ctx, undo, "one"); err != nil {
		return fmt.Errorf("%w; undoing the acquisition failed, the hold lives until its TTL: %w", ackErr, err)
	}
	return fmt.Errorf("%w; the acquisition was undone", ackErr)
}
