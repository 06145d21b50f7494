package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/coordinator/storetest"
)

// plainStore is a store without the optional capabilities.
type plainStore struct{ coordinator.Store }

// flakyStore is a MemStore whose Inspect fails while fails is positive,
// and whose Release fails while relFails is.
type flakyStore struct {
	*storetest.MemStore
	fails, relFails atomic.Int32
}

func (s *flakyStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if s.relFails.Add(-1) >= 0 {
		return coordinator.Lease{}, errFlaky
	}
	return s.MemStore.Release(ctx, req)
}

var errFlaky = errors.New("flaky: connection refused")

func (s *flakyStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	if s.fails.Add(-1) >= 0 {
		return coordinator.Lease{}, errFlaky
	}
	return s.MemStore.Inspect(ctx, r)
}

func recvLeader(t *testing.T, ch <-chan coordinator.Leader) coordinator.Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe ended")
		}
		return l
	case <-time.After(15 * time.Second):
		t.Fatal("no leader came")
	}
	return coordinator.Leader{}
}

func TestLeadValidates(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(storetest.NewMemStore())
	defer c.Close(ctx)
	fn := func(context.Context, *coordinator.Term) error { return nil }
	for name, err := range map[string]error{
		"fn":        c.Lead(ctx, "e", "a", "", nil),
		"election":  c.Lead(ctx, "", "a", "", fn),
		"candidate": c.Lead(ctx, "e", "a\n", "", fn),
		"value":     c.Lead(ctx, "e", "a", strings.Repeat("v", coordinator.MaxMetaLen+1), fn),
		"mode":      c.Lead(ctx, "e", "a", "", fn, coordinator.Shared()),
		"TTL":       c.Lead(ctx, "e", "a", "", fn, coordinator.TTL(0)),
	} {
		var ve *coordinator.ValidationError
		if !errors.As(err, &ve) || ve.Field != name {
			t.Errorf("%s: %v, want a ValidationError naming it", name, err)
		}
	}
	if _, err := c.Leader(ctx, ""); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("Leader(\"\"): %v", err)
	}
	if _, err := c.Observe(ctx, strings.Repeat("x", coordinator.MaxNameLen+1)); !errors.Is(err, coordinator.ErrInvalid) {
		t.Errorf("Observe of a long name: %v", err)
	}
	if got := coordinator.DefaultTTLFor(coordinator.ElectionType); got != coordinator.DefaultElectionTTL {
		t.Errorf("election TTL %v", got)
	}
}

// A campaign with Wait gives up with the holder's conflict.
func TestLeadWaitEnds(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(storetest.NewMemStore())
	defer c.Close(ctx)
	if _, err := c.Acquire(ctx, coordinator.Election("e"), "other"); err != nil {
		t.Fatal(err)
	}
	err := c.Lead(ctx, "e", "a", "", func(context.Context, *coordinator.Term) error {
		t.Error("fn ran without the office")
		return nil
	}, coordinator.Wait(10*time.Millisecond))
	if !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("Lead: %v, want the conflict", err)
	}
}

// fn's context is cancelled with ErrLeaseLost when the office is lost,
// and Lead reports it with fn's error.
func TestLeadLosesOffice(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	defer c.Close(ctx)
	errFn := errors.New("stopped")
	err := c.Lead(ctx, "e", "a", "v", func(ctx context.Context, term *coordinator.Term) error {
		ms.Expire(coordinator.Election("e"))
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), coordinator.ErrLeaseLost) {
			t.Errorf("cause %v", context.Cause(ctx))
		}
		return errFn
	}, coordinator.TTL(300*time.Millisecond))
	if !errors.Is(err, coordinator.ErrLeaseLost) || !errors.Is(err, errFn) {
		t.Fatalf("Lead: %v", err)
	}
}

// A Proclaim after the term ended takes nothing and reports the loss.
func TestProclaimAfterTermEnded(t *testing.T) {
	ctx := t.Context()
	ms := storetest.NewMemStore()
	c := coordinator.New(ms)
	defer c.Close(ctx)
	r := coordinator.Election("e")
	err := c.Lead(ctx, "e", "a", "v1", func(ctx context.Context, term *coordinator.Term) error {
		ms.Expire(r) // the keep-alive renews in 20 minutes: it does not know yet
		perr := term.Proclaim(ctx, "v2")
		if !errors.Is(perr, coordinator.ErrLeaseLost) || term.Value != "v1" {
			t.Errorf("Proclaim after the end: %v, value %q", perr, term.Value)
		}
		if _, err := c.Inspect(ctx, r); !errors.Is(err, coordinator.ErrNotHeld) {
			t.Errorf("the office after the failed Proclaim: %v, want vacant", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := term.Proclaim(cctx, "v3"); !errors.Is(err, context.Canceled) {
			t.Errorf("Proclaim with an ended context: %v", err)
		}
		return nil
	}, coordinator.TTL(time.Hour))
	if !errors.Is(err, coordinator.ErrLeaseLost) {
		t.Fatalf("Lead: %v, want the loss found by the resignation", err)
	}
}

// Proclaim reports the store's failure.
func TestProclaimStoreFails(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(plainStore{storetest.NewMemStore()})
	defer c.Close(ctx)
	err := c.Lead(ctx, "e", "a", "v1", func(ctx context.Context, term *coordinator.Term) error {
		return term.Proclaim(ctx, strings.Repeat("v", coordinator.MaxMetaLen))
	})
	if err != nil {
		t.Fatalf("Lead: %v", err)
	}
}

func TestObserveUnsupported(t *testing.T) {
	ctx := t.Context()
	c := coordinator.New(plainStore{storetest.NewMemStore()})
	defer c.Close(ctx)
	if _, err := c.Observe(ctx, "e"); !errors.Is(err, coordinator.ErrUnsupported) {
		t.Fatalf("Observe: %v", err)
	}
	if _, err := c.WatchType(ctx, "plan"); !errors.Is(err, coordinator.ErrUnsupported) || !strings.Contains(err.Error(), "plan/") {
		t.Fatalf("WatchType: %v", err)
	}
}

// Observe reports an expiry as a vacancy, and after a gap (the store lost
// its data) the leader read again, retrying while the store fails.
func TestObserveExpiryAndGap(t *testing.T) {
	ctx := t.Context()
	fs := &flakyStore{MemStore: storetest.NewMemStore()}
	c := coordinator.New(fs)
	defer c.Close(ctx)
	fs.fails.Store(1)
	if _, err := c.Observe(ctx, "e"); !errors.Is(err, errFlaky) {
		t.Fatalf("Observe while Inspect fails: %v", err)
	}
	obs, err := c.Observe(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	recvLeader(t, obs)
	r := coordinator.Election("e")
	l, err := c.Acquire(ctx, r, "a", coordinator.Meta("v"))
	if err != nil {
		t.Fatal(err)
	}
	if got := recvLeader(t, obs); got.Candidate != "a" || got.Token != l.Token {
		t.Fatalf("observed %+v", got)
	}
	fs.Expire(r)
	if got := recvLeader(t, obs); !got.Vacant() || got.Token != l.Token || got.Since.IsZero() {
		t.Fatalf("observed %+v, want the vacancy of an expiry", got)
	}
	if _, err := c.Acquire(ctx, r, "b"); err != nil {
		t.Fatal(err)
	}
	recvLeader(t, obs)
	fs.fails.Store(2)
	fs.LoseData()
	if got := recvLeader(t, obs); !got.Gap || !got.Vacant() {
		t.Fatalf("observed %+v, want the vacancy read after the gap", got)
	}
	c.Close(ctx)
	if _, ok := <-obs; ok {
		t.Fatal("Observe goes on after Close")
	}
}

// An EventSink never blocks: a full channel gets one gap; after Close
// nothing is sent.
func TestEventSink(t *testing.T) {
	s := coordinator.NewEventSink(coordinator.Resource{Type: "job"})
	if !s.Matches(coordinator.Resource{Type: "job", ID: "1"}) || s.Matches(coordinator.Plan("1")) || s.Resource().Type != "job" {
		t.Fatal("Matches")
	}
	for range coordinator.EventBuffer + 5 {
		s.Send(coordinator.Event{Kind: coordinator.EventRenewed})
	}
	s.Gap("again") // one gap stands for every event missed since
	if n := len(s.C()); n != coordinator.EventBuffer {
		t.Fatalf("%d events buffered", n)
	}
	for i := range coordinator.EventBuffer {
		ev := <-s.C()
		if (ev.Kind == coordinator.EventGap) != (i == coordinator.EventBuffer-1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	s.Gap("read") // the last gap was read: a new one
	if ev := <-s.C(); ev.Gap != "read" {
		t.Fatalf("gap %+v", ev)
	}
	s.Send(coordinator.Event{Kind: coordinator.EventAcquired})
	s.Gap("lost")
	if n := len(s.C()); n != 2 {
		t.Fatalf("%d events, want the event and the gap", n)
	}
	if ev := <-s.C(); ev.Kind != coordinator.EventAcquired {
		t.Fatalf("event %+v", ev)
	}
	if ev := <-s.C(); ev.Kind != coordinator.EventGap || ev.Gap != "lost" {
		t.Fatalf("gap %+v", ev)
	}
	s.Close()
	s.Close()
	s.Send(coordinator.Event{})
	s.Gap("late")
	if _, ok := <-s.C(); ok {
		t.Fatal("sent after Close")
	}
}

// Renewals and re-entries without a new value are no change; a re-entry
// with one is. A Proclaim whose extra hold cannot be dropped still
// proclaims; the resignation drops it.
func TestObserveChanges(t *testing.T) {
	ctx := t.Context()
	fs := &flakyStore{MemStore: storetest.NewMemStore()}
	c := coordinator.New(fs)
	defer c.Close(ctx)
	obs, err := c.Observe(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	recvLeader(t, obs)
	err = c.Lead(ctx, "e", "a", "v1", func(ctx context.Context, term *coordinator.Term) error {
		recvLeader(t, obs)
		r := coordinator.Election("e")
		if _, err := c.Renew(ctx, r, "a"); err != nil {
			return err
		}
		if _, err := c.Acquire(ctx, r, "a"); err != nil {
			return err
		}
		if _, err := c.Release(ctx, r, "a"); err != nil {
			return err
		}
		fs.relFails.Store(1)
		if err := term.Proclaim(ctx, "v2"); err != nil {
			return err
		}
		if l := recvLeader(t, obs); l.Value != "v2" || l.Token != term.Token {
			t.Errorf("observed %+v, want the value v2 and nothing before it", l)
		}
		if l, _ := c.Inspect(ctx, r); l.Count != 2 {
			t.Errorf("count %d, want the extra hold kept", l.Count)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := recvLeader(t, obs); !l.Vacant() {
		t.Fatalf("observed %+v after the resignation", l)
	}
}

// An observer that cannot read the leader after a gap retries until its
// context ends.
func TestObserveRereadEnds(t *testing.T) {
	fs := &flakyStore{MemStore: storetest.NewMemStore()}
	c := coordinator.New(fs)
	defer c.Close(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	obs, err := c.Observe(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	recvLeader(t, obs)
	fs.fails.Store(1 << 20)
	fs.LoseData()
	fs.Advance(time.Second) // prunes nothing: no event
	cancel()
	for range obs { //nolint:revive // ends with ctx
	}
}

// scriptedStore is a MemStore whose Watch delivers the events a test
// sends on its channel.
type scriptedStore struct {
	*storetest.MemStore
	events chan coordinator.Event
}

func (s *scriptedStore) Watch(ctx context.Context, _ coordinator.Resource) (<-chan coordinator.Event, error) {
	out := make(chan coordinator.Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-s.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Events of older terms, decrements and kinds Observe does not know are
// no change; a gap read while the coordinator closes ends Observe.
func TestObserveIgnoresOldEvents(t *testing.T) {
	ctx := t.Context()
	ss := &scriptedStore{MemStore: storetest.NewMemStore(), events: make(chan coordinator.Event)}
	c := coordinator.New(ss)
	r := coordinator.Election("e")
	l, err := c.Acquire(ctx, r, "b", coordinator.Meta("v"))
	if err != nil {
		t.Fatal(err)
	}
	obs, err := c.Observe(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	if got := recvLeader(t, obs); got.Token != l.Token {
		t.Fatalf("observed %+v", got)
	}
	old := coordinator.Lease{Resource: r, Owner: "a", Token: l.Token - 1, Count: 1}
	for _, ev := range []coordinator.Event{
		{Kind: coordinator.EventAcquired, Lease: old},
		{Kind: coordinator.EventReleased, Lease: old},
		{Kind: coordinator.EventDecremented, Lease: l},
		{Kind: "promoted", Lease: l},
		{Kind: coordinator.EventRenewed, Lease: l},
		{Kind: coordinator.EventReentered, Lease: l}, // same value
		{Kind: coordinator.EventReleased, Lease: l},
		{Kind: coordinator.EventExpired, Lease: l}, // already vacant
	} {
		ss.events <- ev
	}
	if got := recvLeader(t, obs); !got.Vacant() || got.Token != l.Token {
		t.Fatalf("observed %+v, want only the vacancy", got)
	}
	if _, err := c.Release(ctx, r, "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-obs; ok {
		t.Fatal("Observe goes on after Close")
	}
}
