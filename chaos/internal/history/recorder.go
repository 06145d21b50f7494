package history

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// ErrReleaseAll is returned by a recording store's ReleaseAll: an
// operation over every resource of an owner has no place in a per-resource
// history.
var ErrReleaseAll = errors.New("history: ReleaseAll is not recorded")

// ErrAcquireAll is returned by a recording store's AcquireAll: the
// history checker does not model several resources taken at once yet.
var ErrAcquireAll = errors.New("history: AcquireAll is not recorded")

// Recorder collects the operations of the stores it wraps. It is safe for
// concurrent use.
type Recorder struct {
	notSent func(error) bool

	mu     sync.Mutex
	ops    []Op
	wipes  []Op
	expiry map[leaseID]int64 // latest known expiry (Unix ms) of each lease
}

type leaseID struct {
	r     coordinator.Resource
	owner string
	token uint64
}

// NewRecorder returns an empty recorder. notSent, if not nil, tells the
// errors after which a call certainly reached no server (a refused
// connection when the client never retries); such calls are not recorded.
// Every other error is an unknown outcome.
func NewRecorder(notSent func(error) bool) *Recorder {
	return &Recorder{notSent: notSent, expiry: map[leaseID]int64{}}
}

// Store returns inner wrapped so that every call is recorded as made by
// client. The wrapper implements coordinator.Notifier when inner does.
func (h *Recorder) Store(inner coordinator.Store, client int) coordinator.Store {
	s := &recStore{h: h, inner: inner, client: client}
	if n, ok := inner.(coordinator.Notifier); ok {
		return &recNotifier{recStore: s, n: n}
	}
	return s
}

// Wipe records that Redis lost every key somewhere between from and to.
func (h *Recorder) Wipe(from, to time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wipes = append(h.wipes, Op{Client: -1, Input: Input{Kind: Wipe, CallMs: from.UnixMilli(), RetMs: to.UnixMilli()},
		Call: from, Return: to})
}

// Ops returns a copy of the recorded operations (without wipes).
func (h *Recorder) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Wipes returns the recorded wipes.
func (h *Recorder) Wipes() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.wipes...)
}

// Expiry returns the latest expiry Redis reported for the lease of owner
// on r with token: a lower bound of when that lease really ends (a renewal
// whose reply was lost may have extended it).
func (h *Recorder) Expiry(r coordinator.Resource, owner string, token uint64) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms, ok := h.expiry[leaseID{r, owner, token}]
	return time.UnixMilli(ms), ok
}

func (h *Recorder) add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	if op.Output.Status == OK && op.Output.Count > 0 && (op.Input.Kind == Acquire || op.Input.Kind == Renew) {
		id := leaseID{op.Resource, op.Output.Holder, op.Output.Token}
		h.expiry[id] = max(h.expiry[id], op.Output.ExpiresAt)
	}
}

type recStore struct {
	h      *Recorder
	inner  coordinator.Store
	client int
}

var _ coordinator.Store = (*recStore)(nil)

func (s *recStore) record(kind Kind, r coordinator.Resource, in Input, call func() (coordinator.Lease, error)) (coordinator.Lease, error) {
	in.Kind = kind
	start := time.Now()
	l, err := call()
	end := time.Now()
	out, sent := outcome(kind, l, err, s.h.notSent)
	if !sent {
		return l, err
	}
	in.CallMs = start.UnixMilli()
	in.RetMs = end.UnixMilli()
	op := Op{Resource: r, Client: s.client, Input: in, Output: out, Call: start, Return: end, Err: err}
	if out.Status == Unknown {
		in.RetMs = never
		op.Input, op.Return = in, time.Time{}
	}
	s.h.add(op)
	return l, err
}

func (s *recStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return s.record(Acquire, req.Resource, Input{Owner: req.Owner, TTL: req.TTL.Milliseconds(), Mode: req.Mode, Permits: req.Permits}, func() (coordinator.Lease, error) {
		return s.inner.Acquire(ctx, req)
	})
}

func (s *recStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return s.record(Renew, req.Resource, Input{Owner: req.Owner, TTL: req.TTL.Milliseconds(), Token: req.Token}, func() (coordinator.Lease, error) {
		return s.inner.Renew(ctx, req)
	})
}

func (s *recStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return s.record(Release, req.Resource, Input{Owner: req.Owner, All: req.All}, func() (coordinator.Lease, error) {
		return s.inner.Release(ctx, req)
	})
}

func (s *recStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	return s.record(Inspect, r, Input{}, func() (coordinator.Lease, error) {
		return s.inner.Inspect(ctx, r)
	})
}

func (s *recStore) ReleaseAll(ctx context.Context, owner, requestID string) (int, error) {
	return 0, ErrReleaseAll
}

func (s *recStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	return nil, ErrAcquireAll
}

// Holders passes through, unrecorded: a read of several leases has no
// place in a per-lease history.
func (s *recStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	return s.inner.Holders(ctx, r)
}

type recNotifier struct {
	*recStore
	n coordinator.Notifier
}

var _ coordinator.Notifier = (*recNotifier)(nil)

func (s *recNotifier) Releases(ctx context.Context) (coordinator.Subscription, error) {
	return s.n.Releases(ctx)
}
