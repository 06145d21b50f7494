package redisstore

// This file holds AcquireAll: in one script (acquireall.lua) when every
// claim is in one partition, else as ordered acquisitions of one resource
// each, with rollback.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
)

// validateMode checks a request's mode, cap and metadata as the
// coordinator does: a mode of the package, a cap of 0 or at least 1 in
// shared mode, metadata ValidateMeta accepts.
func validateMode(req coordinator.Request) error {
	switch {
	case req.Mode != coordinator.ModeExclusive && req.Mode != coordinator.ModeShared:
		return &coordinator.ValidationError{Field: "mode", Value: req.Mode.String(), Rule: "must be exclusive or shared"}
	case req.Permits < 0 || req.Permits > 0 && req.Mode != coordinator.ModeShared:
		return &coordinator.ValidationError{Field: "Permits", Value: strconv.Itoa(req.Permits),
			Rule: "must be 0, or at least 1 in shared mode"}
	}
	return coordinator.ValidateMeta(req.Meta)
}

// AcquireAll implements coordinator.Store. It takes the requests one
// after the other in a fixed order (partition, then key), so that two
// AcquireAlls of overlapping sets meet their conflicts in the same order,
// and releases what it took, the last taken first, when a later one is
// refused or fails.
//
// A repeat of its request ID is answered, not applied again: the first
// call records a nonce under <prefix>:{p}:reqall:<request id> (p: the
// first request's partition, for the store's retry window), and each
// acquisition's request ID is the AcquireAll's, its place and the nonce,
// which the leases remember. A repeat finds the nonce, and each
// acquisition is answered by its lease. A refused AcquireAll deletes the
// record, so that a repeat is a new attempt, whose acquisitions no lease
// remembers.
func (s *Store) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	return s.acquireAll(ctx, reqs, "", coordinator.Resource{}, coordinator.Queueing{})
}

// AcquireAllQueued implements coordinator.WaitQueue: AcquireAll whose
// acquisition of at is queued as AcquireQueued's. A refusal of another
// resource does not queue waiter for it (its next attempt, waiting for that
// one, does).
func (s *Store) AcquireAllQueued(ctx context.Context, reqs []coordinator.Request, waiter string, at coordinator.Resource, q coordinator.Queueing) ([]coordinator.Lease, error) {
	return s.acquireAll(ctx, reqs, waiter, at, q)
}

func (s *Store) acquireAll(ctx context.Context, reqs []coordinator.Request, waiter string, at coordinator.Resource, q coordinator.Queueing) ([]coordinator.Lease, error) {
	order, err := s.allOrder(reqs)
	if err != nil {
		return nil, err
	}
	if err := s.ready(ctx); err != nil {
		return nil, opError("acquire all", err)
	}
	if s.onePartition(reqs) {
		return s.acquireAllScript(ctx, reqs, waiter, at, q)
	}
	memo := s.layout.AllRequestKey(s.layout.Partition(reqs[order[0]].Resource), reqs[0].RequestID)
	nonce, err := s.allNonce(ctx, memo)
	if err != nil {
		return nil, opError("acquire all", err)
	}
	base := derivable(reqs[0].RequestID)
	leases := make([]coordinator.Lease, len(reqs))
	for n, i := range order {
		req := reqs[i]
		req.RequestID = base + ":" + strconv.Itoa(n) + "." + nonce
		var l coordinator.Lease
		if waiter != "" && req.Resource == at {
			l, err = s.AcquireQueued(ctx, req, waiter, q)
		} else {
			l, err = s.Acquire(ctx, req)
		}
		if err != nil {
			return nil, s.rollback(ctx, reqs, order[:n], memo, nonce, err)
		}
		leases[i] = l
	}
	return leases, nil
}

// derivable returns the base of the request IDs derived from id: id, or
// a digest of it when the derived IDs would be too long.
func derivable(id string) string {
	if len(id) <= coordinator.MaxRequestIDLen-32 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// allNonce returns the nonce recorded under memo by an earlier call of
// the same AcquireAll, or records a new one.
func (s *Store) allNonce(ctx context.Context, memo string) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	nonce := hex.EncodeToString(b[:])
	set, err := s.client.SetNX(ctx, memo, nonce, s.retryWindow).Result()
	s.refreshOnFailure(err)
	if err != nil || set {
		return nonce, err
	}
	old, err := s.client.Get(ctx, memo).Result()
	s.refreshOnFailure(err)
	switch {
	case errors.Is(err, redis.Nil):
		return nonce, nil // it lapsed meanwhile: a new attempt
	case err != nil:
		return "", err
	}
	return old, nil
}

// allOrder checks an AcquireAll's requests and returns their indexes in
// the order they are taken: partition, then key.
func (s *Store) allOrder(reqs []coordinator.Request) ([]int, error) {
	if len(reqs) == 0 || len(reqs) > coordinator.MaxClaims {
		return nil, &coordinator.ValidationError{Field: "AcquireAll requests", Value: strconv.Itoa(len(reqs)),
			Rule: "must be 1 to " + strconv.Itoa(coordinator.MaxClaims)}
	}
	if err := coordinator.ValidateOwner(reqs[0].Owner); err != nil {
		return nil, err
	}
	if err := coordinator.ValidateRequestID(reqs[0].RequestID); err != nil {
		return nil, err
	}
	seen := make(map[coordinator.Resource]bool, len(reqs))
	for _, req := range reqs {
		switch {
		case seen[req.Resource]:
			return nil, &coordinator.ValidationError{Field: "AcquireAll requests", Value: req.Resource.String(),
				Rule: "must name each resource once"}
		case req.Owner != reqs[0].Owner || req.RequestID != reqs[0].RequestID:
			return nil, &coordinator.ValidationError{Field: "AcquireAll requests", Value: req.Resource.String(),
				Rule: "must share one owner and one request id"}
		}
		seen[req.Resource] = true
		if err := validateMode(req); err != nil {
			return nil, err
		}
	}
	type placed struct {
		i, p int
		key  string
	}
	ps := make([]placed, len(reqs))
	for i, req := range reqs {
		if err := req.Resource.Validate(); err != nil {
			return nil, err
		}
		ps[i] = placed{i: i, p: s.layout.Partition(req.Resource), key: s.layout.LeaseKey(req.Resource)}
	}
	slices.SortFunc(ps, func(a, b placed) int {
		return cmp.Or(cmp.Compare(a.p, b.p), cmp.Compare(a.key, b.key))
	})
	order := make([]int, len(ps))
	for n, p := range ps {
		order[n] = p.i
	}
	return order, nil
}

// rollback releases the holds an AcquireAll took (taken, in the order they
// were taken) after cause stopped it, and deletes its record memo, so
// that a repeat is a new attempt. It returns cause, joined with what
// failed.
func (s *Store) rollback(ctx context.Context, reqs []coordinator.Request, taken []int, memo, nonce string, cause error) error {
	// undo even when the caller's context ended
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var errs []error
	for n := len(taken) - 1; n >= 0; n-- {
		req := reqs[taken[n]]
		undo := coordinator.Request{Resource: req.Resource, Owner: req.Owner,
			RequestID: derivable(req.RequestID) + ":undo" + strconv.Itoa(n) + "." + nonce}
		if _, err := s.release(ctx, undo, "one"); err != nil {
			errs = append(errs, fmt.Errorf("%s stays held until its TTL: %w", req.Resource, err))
		}
	}
	if err := s.client.Del(ctx, memo).Err(); err != nil {
		s.refreshOnFailure(err)
		errs = append(errs, fmt.Errorf("forgetting the attempt %s: %w", memo, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; cleaning up failed: %w", cause, errors.Join(errs...))
	}
	return cause
}

// onePartition reports whether every request of reqs is in one partition.
func (s *Store) onePartition(reqs []coordinator.Request) bool {
	p := s.layout.Partition(reqs[0].Resource)
	for _, req := range reqs[1:] {
		if s.layout.Partition(req.Resource) != p {
			return false
		}
	}
	return true
}

// acquireAllScript is AcquireAll of requests in one partition: one
// acquireall.lua, all or nothing, applied once as a whole for a repeated
// request ID (the holds remember it). waiter queues for at, as
// AcquireAllQueued's.
func (s *Store) acquireAllScript(ctx context.Context, reqs []coordinator.Request, waiter string, at coordinator.Resource,
	q coordinator.Queueing) ([]coordinator.Lease, error) {
	keys := make([]string, 0, 5*len(reqs))
	args := make([]any, 0, acquireArgs*len(reqs))
	for _, req := range reqs {
		w := ""
		if req.Resource == at {
			w = waiter
		}
		k, a := s.acquireCall(req, w, q)
		keys, args = append(keys, k...), append(args, a...)
	}
	v, ackErr, err := s.evalMarked(ctx, scripts.AcquireAll(), keys, func(st int64) bool { return st == 0 }, args)
	if err != nil {
		return nil, opError("acquire all", err)
	}
	leases, err := parseAllReply(reqs, v)
	if err != nil {
		return nil, err
	}
	if ackErr != nil {
		return nil, fmt.Errorf("redisstore: acquire all: %w", s.unackAll(ctx, reqs, ackErr))
	}
	return leases, nil
}

// parseAllReply reads acquireall.lua's reply to reqs: the leases, or the
// refusal of a claim.
func parseAllReply(reqs []coordinator.Request, v []any) ([]coordinator.Lease, error) {
	if len(v) < 2 {
		return nil, fmt.Errorf("redisstore: acquire all: reply %v", v)
	}
	st, err := toInt(v[0])
	if err != nil {
		return nil, fmt.Errorf("redisstore: acquire all: status: %w", err)
	}
	if st > 0 && int(st) <= len(reqs) {
		req := reqs[st-1]
		rp, err := parseClaim(req.Resource, v[1])
		if err != nil {
			return nil, fmt.Errorf("redisstore: acquire all: %s: %w", req.Resource, err)
		}
		if err := rp.refusal(req); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("redisstore: acquire all: %s refused with status %d", req.Resource, rp.status)
	}
	if len(v) != len(reqs)+1 {
		return nil, fmt.Errorf("redisstore: acquire all: %d replies for %d claims", len(v)-1, len(reqs))
	}
	leases := make([]coordinator.Lease, len(reqs))
	for i, req := range reqs {
		rp, err := parseClaim(req.Resource, v[i+1])
		if err != nil {
			return nil, fmt.Errorf("redisstore: acquire all: %s: %w", req.Resource, err)
		}
		leases[i] = rp.lease
		if rp.status == statusFree { // a repeat, this hold gone since
			leases[i] = coordinator.Lease{Resource: req.Resource, Owner: req.Owner}
		}
	}
	return leases, nil
}

// parseClaim reads one claim's reply of acquireall.lua (acquire.lua's).
func parseClaim(r coordinator.Resource, v any) (scriptReply, error) {
	a, ok := v.([]any)
	if !ok {
		return scriptReply{}, fmt.Errorf("claim reply: unexpected %T", v)
	}
	return parseReply(r, a)
}

// unackAll undoes the acquisitions of reqs, which the replicas did not
// acknowledge (see unack).
func (s *Store) unackAll(ctx context.Context, reqs []coordinator.Request, ackErr error) error {
	// undo even when the caller's context ended while WAIT ran
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var errs []error
	for _, req := range reqs {
		undo := coordinator.Request{Resource: req.Resource, Owner: req.Owner, RequestID: req.RequestID + ".unacked"}
		if _, err := s.release(ctx, undo, "one"); err != nil {
			errs = append(errs, fmt.Errorf("%s stays held until its TTL: %w", req.Resource, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; undoing the acquisitions failed: %w", ackErr, errors.Join(errs...))
	}
	return fmt.Errorf("%w; the acquisitions were undone", ackErr)
}
