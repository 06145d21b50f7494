package coordinator_test

import (
	"context"
	"sync"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// fakeStore is an in-memory coordinator.Store with the semantics of the
// Store contract (no expiry, no request-id memory), whose calls can be
// made to fail or block, and which records what reaches it.
type fakeStore struct {
	mu     sync.Mutex
	leases map[coordinator.Resource]coordinator.Lease
	token  uint64
	calls  []fakeCall

	// fail, when set, decides the error of a call before it is applied
	fail func(op string, req coordinator.Request) error
	// before, when set, runs before a call is applied, outside the lock
	before func(op string, req coordinator.Request)
}

type fakeCall struct {
	op  string
	req coordinator.Request
}

var _ coordinator.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{leases: map[coordinator.Resource]coordinator.Lease{}}
}

// enter records the call and returns the injected error, if any.
func (s *fakeStore) enter(op string, req coordinator.Request) error {
	s.mu.Lock()
	s.calls = append(s.calls, fakeCall{op, req})
	fail, before := s.fail, s.before
	s.mu.Unlock()
	if before != nil {
		before(op, req)
	}
	if fail != nil {
		return fail(op, req)
	}
	return nil
}

func (s *fakeStore) callsOf(op string) []coordinator.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []coordinator.Request
	for _, c := range s.calls {
		if op == "" || c.op == op {
			out = append(out, c.req)
		}
	}
	return out
}

func (s *fakeStore) setFail(f func(op string, req coordinator.Request) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func (s *fakeStore) Acquire(_ context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := s.enter("acquire", req); err != nil {
		return coordinator.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	l, ok := s.leases[req.Resource]
	switch {
	case !ok:
		s.token++
		l = coordinator.Lease{Resource: req.Resource, Owner: req.Owner, Token: s.token, Count: 1, AcquiredAt: now, ExpiresAt: now.Add(req.TTL)}
	case l.Owner != req.Owner:
		return coordinator.Lease{}, &coordinator.ConflictError{Resource: req.Resource, Holder: l.Owner, Token: l.Token, Count: l.Count, ExpiresAt: l.ExpiresAt}
	default:
		l.Count++
		if e := now.Add(req.TTL); e.After(l.ExpiresAt) {
			l.ExpiresAt = e
		}
	}
	s.leases[req.Resource] = l
	return l, nil
}

func (s *fakeStore) Renew(_ context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := s.enter("renew", req); err != nil {
		return coordinator.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[req.Resource]
	switch {
	case !ok:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: req.Resource, Owner: req.Owner, Err: coordinator.ErrExpired}
	case l.Owner != req.Owner:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: req.Resource, Owner: req.Owner, Holder: l.Owner, Err: coordinator.ErrNotHeld}
	}
	l.ExpiresAt = time.Now().Add(req.TTL)
	s.leases[req.Resource] = l
	return l, nil
}

func (s *fakeStore) Release(_ context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := s.enter("release", req); err != nil {
		return coordinator.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[req.Resource]
	switch {
	case !ok:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "release", Resource: req.Resource, Owner: req.Owner, Err: coordinator.ErrNotHeld}
	case l.Owner != req.Owner:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "release", Resource: req.Resource, Owner: req.Owner, Holder: l.Owner, Err: coordinator.ErrNotHeld}
	}
	l.Count--
	if req.All || l.Count <= 0 {
		l.Count = 0
		delete(s.leases, req.Resource)
	} else {
		s.leases[req.Resource] = l
	}
	return l, nil
}

func (s *fakeStore) Inspect(_ context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	if err := s.enter("inspect", coordinator.Request{Resource: r}); err != nil {
		return coordinator.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[r]
	if !ok {
		return coordinator.Lease{}, coordinator.ErrNotHeld
	}
	return l, nil
}

func (s *fakeStore) ReleaseAll(_ context.Context, owner, requestID string) (int, error) {
	if err := s.enter("releaseall", coordinator.Request{Owner: owner, RequestID: requestID}); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for r, l := range s.leases {
		if l.Owner == owner {
			delete(s.leases, r)
			n++
		}
	}
	return n, nil
}

// AcquireAll takes every request as Acquire does, all or nothing
// (exclusive leases only: the fake knows no modes).
func (s *fakeStore) AcquireAll(_ context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	if err := s.enter("acquireall", reqs[0]); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, req := range reqs {
		if l, ok := s.leases[req.Resource]; ok && l.Owner != req.Owner {
			return nil, &coordinator.ConflictError{Resource: req.Resource, Holder: l.Owner, Token: l.Token, Count: l.Count, ExpiresAt: l.ExpiresAt}
		}
	}
	now := time.Now()
	out := make([]coordinator.Lease, len(reqs))
	for i, req := range reqs {
		l, ok := s.leases[req.Resource]
		if ok {
			l.Count++
			if e := now.Add(req.TTL); e.After(l.ExpiresAt) {
				l.ExpiresAt = e
			}
		} else {
			s.token++
			l = coordinator.Lease{Resource: req.Resource, Owner: req.Owner, Token: s.token, Count: 1, AcquiredAt: now, ExpiresAt: now.Add(req.TTL)}
		}
		s.leases[req.Resource] = l
		out[i] = l
	}
	return out, nil
}

// Holders returns the lease on r, the only one an exclusive resource has.
func (s *fakeStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	l, err := s.Inspect(ctx, r)
	if err != nil {
		return nil, err
	}
	return []coordinator.Lease{l}, nil
}
