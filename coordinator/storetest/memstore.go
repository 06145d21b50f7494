package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// MemStore is an in-memory coordinator.Store with every part of the
// contract: exclusive and shared leases with caps and upgrades, AcquireAll,
// Holders, request IDs applied once, fencing tokens, release
// notifications (coordinator.Notifier) and the fair waiter queue
// (coordinator.WaitQueue) of docs/redis-keys.md. It is the reference the
// conformance suite is checked against (MemHarness), and a store for tests
// of code built on the coordinator that need no Redis.
//
// Its clock is the wall clock plus an offset that Advance moves, read in
// milliseconds as Redis TIME is: leases expire as they would on Redis, and
// Advance makes them expire at once. All its resources share one
// partition and one fence.
type MemStore struct {
	mu     sync.Mutex
	offset time.Duration
	fence  uint64
	res    map[coordinator.Resource]*memRes
	queues map[coordinator.Resource][]memEntry
	memos  map[memoKey]memMemo
	subs   map[*memSub]struct{}
	sinks  map[*coordinator.EventSink]struct{} // watchers (memwatch.go)
	seq    uint64                              // events emitted
}

var (
	_ coordinator.Store     = (*MemStore)(nil)
	_ coordinator.WaitQueue = (*MemStore)(nil)
)

// Lifetimes of the MemStore's memories, as in the Redis store.
const (
	// MemQueueLife is how long a queued waiter keeps its place without
	// an attempt: a waiter that died loses its turn after it.
	MemQueueLife = 3 * time.Second
	memRetry     = 30 * time.Second // memo of a release that deleted a hold
	memMemoLen   = 8                // request IDs a hold remembers
	memSubBuffer = 64               // notifications a subscriber may lag behind
)

// memRes is a held resource: its mode, its cap, its holders.
type memRes struct {
	shared bool
	cap    int
	holds  map[string]*memHold
}

// memHold is one owner's hold.
type memHold struct {
	count             int
	token             uint64
	acquired, expires time.Time
	meta              string
	reqs              []string // request IDs applied, newest first
}

// memEntry is a queued waiter.
type memEntry struct {
	waiter   string
	deadline time.Time
}

type memoKey struct {
	r  coordinator.Resource
	id string
}

type memMemo struct {
	l     coordinator.Lease
	until time.Time
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{
		res:    map[coordinator.Resource]*memRes{},
		queues: map[coordinator.Resource][]memEntry{},
		memos:  map[memoKey]memMemo{},
		subs:   map[*memSub]struct{}{},
		sinks:  map[*coordinator.EventSink]struct{}{},
	}
}

// Advance moves the store's clock d ahead: holds and queued waiters whose
// time ran out meanwhile are gone.
func (s *MemStore) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	s.pruneAll(s.now())
}

// Expire moves the clock past the expiry of every hold on r.
func (s *MemStore) Expire(r coordinator.Resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if left := s.pttl(r); left >= 0 {
		s.offset += left + time.Millisecond
	}
	s.prune(r, s.now())
}

// PTTL returns the time left until the last hold on r expires (the
// Redis key's PTTL), or -1 when r is free.
func (s *MemStore) PTTL(r coordinator.Resource) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pttl(r)
}

func (s *MemStore) pttl(r coordinator.Resource) time.Duration {
	now := s.now()
	res := s.prune(r, now)
	if res == nil {
		return -1
	}
	var last time.Time
	for _, h := range res.holds {
		if h.expires.After(last) {
			last = h.expires
		}
	}
	return last.Sub(now)
}

// LoseData forgets everything, the fence included, as a Redis restart
// without persistence would.
func (s *MemStore) LoseData() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fence = 0
	clear(s.res)
	clear(s.queues)
	clear(s.memos)
	s.gap("the store lost its data")
}

// SetFence sets the last fencing token issued.
func (s *MemStore) SetFence(token uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fence = token
}

// Queue returns the waiters queued for r, first queued first.
func (s *MemStore) Queue(r coordinator.Resource) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.queue(r, s.now()) {
		out = append(out, e.waiter)
	}
	return out
}

// now is the store's time, in whole milliseconds.
func (s *MemStore) now() time.Time {
	return time.UnixMilli(time.Now().Add(s.offset).UnixMilli())
}

// nextToken issues a token: max(last + 1, now in µs).
func (s *MemStore) nextToken() uint64 {
	t := max(s.fence+1, uint64(time.Now().Add(s.offset).UnixMicro()))
	s.fence = t
	return t
}

// prune drops r's expired holds and returns what is left, nil when r is
// free.
func (s *MemStore) prune(r coordinator.Resource, now time.Time) *memRes {
	res := s.res[r]
	if res == nil {
		return nil
	}
	for o, h := range res.holds {
		if !h.expires.After(now) {
			delete(res.holds, o)
			s.emit(coordinator.EventExpired, s.lease(r, res, o, h, now), h.expires)
		}
	}
	if len(res.holds) == 0 {
		delete(s.res, r)
		return nil
	}
	return res
}

// queue drops r's waiters whose deadline passed and returns the rest.
func (s *MemStore) queue(r coordinator.Resource, now time.Time) []memEntry {
	q := slices.DeleteFunc(s.queues[r], func(e memEntry) bool { return !e.deadline.After(now) })
	if len(q) == 0 {
		delete(s.queues, r)
		return nil
	}
	s.queues[r] = q
	return q
}

// position returns waiter's place in q, or -1.
func position(q []memEntry, waiter string) int {
	if waiter == "" {
		return -1
	}
	return slices.IndexFunc(q, func(e memEntry) bool { return e.waiter == waiter })
}

// enqueue queues waiter for r, keeping its place when queued, and gives
// it MemQueueLife from now.
func (s *MemStore) enqueue(r coordinator.Resource, waiter string, now time.Time) {
	q := s.queue(r, now)
	e := memEntry{waiter: waiter, deadline: now.Add(MemQueueLife)}
	if i := position(q, waiter); i >= 0 {
		q[i] = e
		return
	}
	s.queues[r] = append(q, e)
}

// dequeue takes waiter out of r's queue, or moves it to the end when it
// stays queued.
func (s *MemStore) dequeue(r coordinator.Resource, waiter string, stay bool, now time.Time) {
	q := s.queue(r, now)
	if i := position(q, waiter); i >= 0 {
		q = slices.Delete(q, i, i+1)
	}
	if stay {
		q = append(q, memEntry{waiter: waiter, deadline: now.Add(MemQueueLife)})
	}
	if len(q) == 0 {
		delete(s.queues, r)
		return
	}
	s.queues[r] = q
}

// lease returns owner's hold h on r as a Lease.
func (s *MemStore) lease(r coordinator.Resource, res *memRes, owner string, h *memHold, now time.Time) coordinator.Lease {
	l := coordinator.Lease{Resource: r, Owner: owner, Token: h.token, Count: h.count,
		AcquiredAt: h.acquired, ExpiresAt: h.expires, Meta: h.meta, Remaining: h.expires.Sub(now)}
	if res.shared {
		l.Mode, l.Permits = coordinator.ModeShared, res.cap
	}
	return l
}

// holders returns r's holds sorted by expiry, then owner.
func (s *MemStore) holders(r coordinator.Resource, res *memRes, now time.Time) []coordinator.Lease {
	out := make([]coordinator.Lease, 0, len(res.holds))
	for o, h := range res.holds {
		out = append(out, s.lease(r, res, o, h, now))
	}
	slices.SortFunc(out, func(a, b coordinator.Lease) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.Owner, b.Owner))
	})
	return out
}

// conflict returns the *ConflictError of a request of owner on r (nil
// res: r is free) with ahead waiters queued before it.
func (s *MemStore) conflict(r coordinator.Resource, res *memRes, owner string, ahead int, upgrade bool, now time.Time) *coordinator.ConflictError {
	ce := &coordinator.ConflictError{Resource: r, Queued: ahead, Upgrade: upgrade}
	if res == nil {
		return ce
	}
	for _, l := range s.holders(r, res, now) {
		if l.Owner == owner {
			continue
		}
		ce.Holder, ce.Token, ce.Count, ce.ExpiresAt, ce.Remaining = l.Owner, l.Token, l.Count, l.ExpiresAt, l.Remaining
		ce.Mode, ce.Permits, ce.Meta = l.Mode, l.Permits, l.Meta
		break
	}
	ce.Holders = len(res.holds)
	return ce
}

// remember records a request ID applied to h.
func (h *memHold) remember(id string) {
	h.reqs = append([]string{id}, h.reqs[:min(len(h.reqs), memMemoLen-1)]...)
}

// Kinds of grant a decision makes.
const (
	grantAnswer = iota // a repeated request ID: nothing to apply
	grantReenter
	grantUpgrade
	grantFresh
)

// decision is what an acquisition would do, decided before anything is
// applied.
type decision struct {
	grant int
	l     coordinator.Lease // grantAnswer: the lease as it stands
}

// decide returns what req, by waiter ("" when not queued), would do to r
// now, or its refusal: a *ConflictError or a *ValidationError of the cap.
func (s *MemStore) decide(req coordinator.Request, waiter string, now time.Time) (decision, error) {
	r, o := req.Resource, req.Owner
	res := s.prune(r, now)
	q := s.queue(r, now)
	ahead := len(q)
	if i := position(q, waiter); i >= 0 {
		ahead = i
	}
	shared := req.Mode == coordinator.ModeShared
	if res != nil {
		if h := res.holds[o]; h != nil {
			switch {
			case slices.Contains(h.reqs, req.RequestID):
				return decision{grant: grantAnswer, l: s.lease(r, res, o, h, now)}, nil
			case shared && res.shared && req.Permits != 0 && req.Permits != res.cap:
				return decision{}, capError(r, req.Permits, res.cap)
			case !shared && res.shared && len(res.holds) > 1:
				return decision{}, s.conflict(r, res, o, 0, true, now)
			case !shared && res.shared:
				return decision{grant: grantUpgrade}, nil
			}
			return decision{grant: grantReenter}, nil
		}
		switch {
		case !res.shared || !shared:
			return decision{}, s.conflict(r, res, o, ahead, false, now)
		case req.Permits != 0 && req.Permits != res.cap:
			return decision{}, capError(r, req.Permits, res.cap)
		case res.cap > 0 && len(res.holds) >= res.cap:
			return decision{}, s.conflict(r, res, o, ahead, false, now)
		}
	}
	if ahead > 0 {
		// fair: a fresh hold goes to the first queued waiter only
		return decision{}, s.conflict(r, res, o, ahead, false, now)
	}
	return decision{grant: grantFresh}, nil
}

// capError is the refusal of a request for cap n on r, recorded with rec.
func capError(r coordinator.Resource, n, rec int) error {
	rule := fmt.Sprintf("resource %s is capped at %d by its holders", r, rec)
	if rec == 0 {
		rule = fmt.Sprintf("resource %s has no cap: its holders took it shared without Permits", r)
	}
	return &coordinator.ValidationError{Field: "Permits", Value: strconv.Itoa(n), Rule: rule}
}

// apply carries out d for req and returns the lease.
func (s *MemStore) apply(req coordinator.Request, d decision, now time.Time) coordinator.Lease {
	r, o := req.Resource, req.Owner
	if d.grant == grantAnswer {
		return d.l
	}
	res := s.res[r]
	if res == nil {
		res = &memRes{holds: map[string]*memHold{}}
		if req.Mode == coordinator.ModeShared {
			res.shared, res.cap = true, req.Permits
		}
		s.res[r] = res
	}
	expires := now.Add(req.TTL)
	h := res.holds[o]
	switch d.grant {
	case grantFresh:
		h = &memHold{token: s.nextToken(), acquired: now, expires: expires}
		res.holds[o] = h
	case grantUpgrade:
		res.shared, res.cap = false, 0
		h.token = s.nextToken()
	}
	h.count++
	if expires.After(h.expires) {
		h.expires = expires
	}
	if req.Meta != "" {
		h.meta = req.Meta
	}
	h.remember(req.RequestID)
	l := s.lease(r, res, o, h, now)
	kind := coordinator.EventReentered
	if d.grant == grantFresh {
		kind = coordinator.EventAcquired
	}
	s.emit(kind, l, now)
	return l
}

// roomFor reports whether r could take another holder: it is free, or
// shared with room under its cap.
func (s *MemStore) roomFor(r coordinator.Resource, now time.Time) bool {
	res := s.prune(r, now)
	return res == nil || res.shared && (res.cap == 0 || len(res.holds) < res.cap)
}

// validate checks a request as the coordinator does.
func validate(ctx context.Context, req coordinator.Request, ttl bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := req.Resource.Validate(); err != nil {
		return err
	}
	if err := coordinator.ValidateOwner(req.Owner); err != nil {
		return err
	}
	if err := coordinator.ValidateRequestID(req.RequestID); err != nil {
		return err
	}
	if ttl {
		if err := coordinator.ValidateTTL(req.TTL); err != nil {
			return err
		}
	}
	switch {
	case req.Mode != coordinator.ModeExclusive && req.Mode != coordinator.ModeShared:
		return &coordinator.ValidationError{Field: "mode", Value: req.Mode.String(), Rule: "must be exclusive or shared"}
	case req.Permits < 0 || req.Permits > 0 && req.Mode != coordinator.ModeShared:
		return &coordinator.ValidationError{Field: "Permits", Value: strconv.Itoa(req.Permits), Rule: "must be 0, or at least 1 in shared mode"}
	}
	return coordinator.ValidateMeta(req.Meta)
}

// Acquire implements coordinator.Store.
func (s *MemStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return s.AcquireQueued(ctx, req, "", coordinator.Queueing{})
}

// AcquireQueued implements coordinator.WaitQueue.
func (s *MemStore) AcquireQueued(ctx context.Context, req coordinator.Request, waiter string, q coordinator.Queueing) (coordinator.Lease, error) {
	ls, err := s.AcquireAllQueued(ctx, []coordinator.Request{req}, waiter, req.Resource, q)
	if err != nil {
		return coordinator.Lease{}, err
	}
	return ls[0], nil
}

// AcquireAll implements coordinator.Store.
func (s *MemStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	return s.AcquireAllQueued(ctx, reqs, "", coordinator.Resource{}, coordinator.Queueing{})
}

// AcquireAllQueued implements coordinator.WaitQueue.
func (s *MemStore) AcquireAllQueued(ctx context.Context, reqs []coordinator.Request, waiter string, at coordinator.Resource, q coordinator.Queueing) ([]coordinator.Lease, error) {
	if len(reqs) == 0 || len(reqs) > coordinator.MaxClaims {
		return nil, &coordinator.ValidationError{Field: "requests", Value: strconv.Itoa(len(reqs)),
			Rule: "must be 1 to " + strconv.Itoa(coordinator.MaxClaims)}
	}
	seen := map[coordinator.Resource]bool{}
	for _, req := range reqs {
		if err := validate(ctx, req, true); err != nil {
			return nil, err
		}
		if seen[req.Resource] || req.Owner != reqs[0].Owner || req.RequestID != reqs[0].RequestID {
			return nil, &coordinator.ValidationError{Field: "requests", Value: req.Resource.String(),
				Rule: "must name distinct resources, with one owner and one request id"}
		}
		seen[req.Resource] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if ls, ok := s.answered(reqs, now); ok {
		return ls, nil
	}
	ds := make([]decision, len(reqs))
	for i, req := range reqs {
		d, err := s.decide(req, waiter, now)
		if err != nil {
			if ce, ok := errors.AsType[*coordinator.ConflictError](err); ok && !ce.Upgrade && waiter != "" {
				s.enqueue(req.Resource, waiter, now)
			}
			return nil, err
		}
		ds[i] = d
	}
	ls := make([]coordinator.Lease, len(reqs))
	for i, req := range reqs {
		ls[i] = s.apply(req, ds[i], now)
	}
	if waiter != "" && seen[at] {
		s.dequeue(at, waiter, q.StayQueued, now)
	}
	for i, req := range reqs {
		if ds[i].grant == grantFresh && len(s.queue(req.Resource, now)) > 0 && s.roomFor(req.Resource, now) {
			s.notifyFirst(req.Resource, now) // the next waiter may get in too
		}
	}
	return ls, nil
}

// answered returns the leases of a repeated AcquireAll: one whose request
// ID a hold of it remembers.
func (s *MemStore) answered(reqs []coordinator.Request, now time.Time) ([]coordinator.Lease, bool) {
	repeat := false
	ls := make([]coordinator.Lease, len(reqs))
	for i, req := range reqs {
		ls[i] = coordinator.Lease{Resource: req.Resource, Owner: req.Owner}
		if res := s.prune(req.Resource, now); res != nil {
			if h := res.holds[req.Owner]; h != nil {
				ls[i] = s.lease(req.Resource, res, req.Owner, h, now)
				repeat = repeat || slices.Contains(h.reqs, req.RequestID)
			}
		}
	}
	return ls, repeat
}

// Renew implements coordinator.Store.
func (s *MemStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := validate(ctx, req, true); err != nil {
		return coordinator.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, o, now := req.Resource, req.Owner, s.now()
	res := s.prune(r, now)
	if res == nil {
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: o, Err: coordinator.ErrExpired}
	}
	h := res.holds[o]
	switch {
	case h == nil:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: o,
			Holder: s.conflict(r, res, o, 0, false, now).Holder, Err: coordinator.ErrNotHeld}
	case req.Token != 0 && req.Token != h.token:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: o,
			Holder: o, HolderToken: h.token, Err: coordinator.ErrNotHeld}
	case !slices.Contains(h.reqs, req.RequestID):
		h.expires = now.Add(req.TTL)
		h.remember(req.RequestID)
		s.emit(coordinator.EventRenewed, s.lease(r, res, o, h, now), now)
	}
	return s.lease(r, res, o, h, now), nil
}

// Release implements coordinator.Store.
func (s *MemStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	l, _, err := s.ReleaseHandOff(ctx, req, "")
	return l, err
}

// ReleaseHandOff implements coordinator.WaitQueue.
func (s *MemStore) ReleaseHandOff(ctx context.Context, req coordinator.Request, waiter string) (coordinator.Lease, bool, error) {
	if err := validate(ctx, req, false); err != nil {
		return coordinator.Lease{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.release(req, waiter, s.now())
}

func (s *MemStore) release(req coordinator.Request, waiter string, now time.Time) (coordinator.Lease, bool, error) {
	r, o := req.Resource, req.Owner
	res := s.prune(r, now)
	if m, ok := s.memos[memoKey{r, req.RequestID}]; ok && now.Before(m.until) {
		return m.l, false, nil
	}
	var h *memHold
	if res != nil {
		h = res.holds[o]
	}
	switch {
	case h == nil && res == nil:
		return coordinator.Lease{}, false, &coordinator.LeaseError{Op: "release", Resource: r, Owner: o, Err: coordinator.ErrNotHeld}
	case h == nil:
		return coordinator.Lease{}, false, &coordinator.LeaseError{Op: "release", Resource: r, Owner: o,
			Holder: s.conflict(r, res, o, 0, false, now).Holder, Err: coordinator.ErrNotHeld}
	case slices.Contains(h.reqs, req.RequestID):
		return s.lease(r, res, o, h, now), false, nil
	}
	h.count--
	if req.All {
		h.count = 0
	}
	l := s.lease(r, res, o, h, now)
	if h.count > 0 {
		h.remember(req.RequestID)
		s.emit(coordinator.EventDecremented, l, now)
		return l, false, nil
	}
	s.emit(coordinator.EventReleased, l, now)
	delete(res.holds, o)
	if len(res.holds) == 0 {
		delete(s.res, r)
	}
	s.memos[memoKey{r, req.RequestID}] = memMemo{l: l, until: now.Add(memRetry)}
	return l, s.freed(r, waiter, now), nil
}

// freed tells of a hold on r that ended: the first queued waiter, unless
// it is the releaser's coordinator (waiter), which is then told by the
// report (true); everybody when nobody is queued.
func (s *MemStore) freed(r coordinator.Resource, waiter string, now time.Time) bool {
	q := s.queue(r, now)
	if len(q) > 0 && waiter != "" && q[0].waiter == waiter {
		return true
	}
	s.notifyFirst(r, now)
	return false
}

// notifyFirst tells the first queued waiter of r that r may be its; a
// waiter without a subscription is dead and loses its place to the next.
// With nobody queued every subscriber is told.
func (s *MemStore) notifyFirst(r coordinator.Resource, now time.Time) {
	for {
		q := s.queue(r, now)
		if len(q) == 0 {
			s.deliver(r, "")
			return
		}
		if s.deliver(r, q[0].waiter) {
			return
		}
		s.queues[r] = q[1:]
	}
}

// Inspect implements coordinator.Store.
func (s *MemStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	ls, err := s.Holders(ctx, r)
	if err != nil {
		return coordinator.Lease{}, err
	}
	return ls[0], nil
}

// Holders implements coordinator.Store.
func (s *MemStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	res := s.prune(r, now)
	if res == nil {
		return nil, fmt.Errorf("%w: %s is free", coordinator.ErrNotHeld, r)
	}
	return s.holders(r, res, now), nil
}

// ReleaseAll implements coordinator.Store.
func (s *MemStore) ReleaseAll(ctx context.Context, owner, requestID string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := coordinator.ValidateOwner(owner); err != nil {
		return 0, err
	}
	if err := coordinator.ValidateRequestID(requestID); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var mine []coordinator.Resource
	for r := range s.res {
		if res := s.prune(r, now); res != nil && res.holds[owner] != nil {
			mine = append(mine, r)
		}
	}
	for _, r := range mine {
		req := coordinator.Request{Resource: r, Owner: owner, RequestID: requestID + "." + r.String(), All: true}
		if _, _, err := s.release(req, "", now); err != nil {
			return 0, err
		}
	}
	return len(mine), nil
}

// Unqueue implements coordinator.WaitQueue. A first queued waiter that
// leaves while r has room tells the next one.
func (s *MemStore) Unqueue(ctx context.Context, r coordinator.Resource, waiter string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	q := s.queue(r, now)
	i := position(q, waiter)
	if i < 0 {
		return nil
	}
	s.dequeue(r, waiter, false, now)
	if i == 0 && len(q) > 1 && s.roomFor(r, now) {
		s.notifyFirst(r, now)
	}
	return nil
}

// Releases implements coordinator.Notifier.
func (s *MemStore) Releases(ctx context.Context) (coordinator.Subscription, error) {
	return s.ReleasesFor(ctx, "")
}

// ReleasesFor implements coordinator.WaitQueue.
func (s *MemStore) ReleasesFor(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sub := &memSub{s: s, waiter: waiter, ch: make(chan coordinator.Resource, memSubBuffer)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[sub] = struct{}{}
	return sub, nil
}

// deliver sends r to the subscribers of waiter, or to every subscriber
// when waiter is "", and reports whether there were any. A subscriber
// whose buffer is full misses it.
func (s *MemStore) deliver(r coordinator.Resource, waiter string) bool {
	found := false
	for sub := range s.subs {
		if waiter != "" && sub.waiter != waiter {
			continue
		}
		found = true
		select {
		case sub.ch <- r:
		default:
		}
	}
	return found
}

// memSub is a subscription to a MemStore's notifications.
type memSub struct {
	s      *MemStore
	waiter string
	ch     chan coordinator.Resource
}

// Released implements coordinator.Subscription.
func (m *memSub) Released() <-chan coordinator.Resource { return m.ch }

// Close implements coordinator.Subscription.
func (m *memSub) Close() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if _, ok := m.s.subs[m]; ok {
		delete(m.s.subs, m)
		close(m.ch)
	}
	return nil
}

// MemHarness is the Harness of MemStores. It declares every Capability.
type MemHarness struct{}

var _ Capable = MemHarness{}

// NewStore implements Harness.
func (MemHarness) NewStore(testing.TB) coordinator.Store { return NewMemStore() }

// Expire implements Harness.
func (MemHarness) Expire(_ testing.TB, s coordinator.Store, r coordinator.Resource) {
	s.(*MemStore).Expire(r)
}

// RemainingTTL implements Harness.
func (MemHarness) RemainingTTL(_ testing.TB, s coordinator.Store, r coordinator.Resource) time.Duration {
	return s.(*MemStore).PTTL(r)
}

// LoseData implements Harness.
func (MemHarness) LoseData(_ testing.TB, s coordinator.Store) { s.(*MemStore).LoseData() }

// SetFence implements Harness.
func (MemHarness) SetFence(_ testing.TB, s coordinator.Store, _ coordinator.Resource, token uint64) {
	s.(*MemStore).SetFence(token)
}

// DropScripts implements Harness: a MemStore has no scripts to lose.
func (MemHarness) DropScripts(testing.TB, coordinator.Store) {}

// Capabilities implements Capable.
func (MemHarness) Capabilities() []Capability { return []Capability{Shared, FairQueue, ExpiryEvents} }
