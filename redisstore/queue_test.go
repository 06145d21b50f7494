package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// acquireQueued is a waiting acquisition of r by owner, queued as waiter.
func acquireQueued(ctx context.Context, s *redisstore.Store, r coordinator.Resource, owner, id, waiter string, stay bool) (coordinator.Lease, error) {
	return s.AcquireQueued(ctx, request(r, owner, id, time.Minute), waiter, coordinator.Queueing{StayQueued: stay})
}

// handOff releases as ReleaseHandOff by waiter, and returns the lease and
// whether the release handed the resource to waiter's own waiters.
func handOff(ctx context.Context, t *testing.T, s *redisstore.Store, req coordinator.Request, waiter string) (coordinator.Lease, bool) {
	t.Helper()
	l, handed, err := s.ReleaseHandOff(ctx, req, waiter)
	return lease(t)(l, err), handed
}

// TestWaiterQueue: a refused waiting acquisition queues its coordinator;
// a release notifies the first queued coordinator alone, on its own
// channel, or nobody when it names a queued coordinator of its own.
func TestWaiterQueue(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		subA := must[coordinator.Subscription](t)(s.ReleasesFor(ctx, "A"))
		defer subA.Close()
		subB := must[coordinator.Subscription](t)(s.ReleasesFor(ctx, "B"))
		defer subB.Close()
		var ids reqIDs
		r, other := coordinator.Plan("queued"), coordinator.Plan("other")
		q := s.Layout().QueueKey(r)
		queue := func() []string {
			v, err := b.client.Get(ctx, q).Result()
			if errors.Is(err, redis.Nil) {
				return nil
			}
			return waiterIDs(t, must[string](t)(v, err))
		}

		lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
		for _, w := range []string{"A", "B", "A"} {
			_, err := acquireQueued(ctx, s, r, "o"+w, ids.next(), w, false)
			if !errors.Is(err, coordinator.ErrConflict) {
				t.Fatalf("waiting acquire of %s: %v", w, err)
			}
		}
		if got := queue(); !slices.Equal(got, []string{"A", "B"}) {
			t.Fatalf("queue %v, want [A B] (A keeps its place)", got)
		}
		if ttl := must[time.Duration](t)(b.client.PTTL(ctx, q).Result()); ttl <= 0 || ttl > 5*time.Second {
			t.Fatalf("queue PTTL %v, want up to 5s", ttl)
		}

		// the release goes to A alone
		lease(t)(s.Release(ctx, request(r, "holder", ids.next(), 0)))
		if got := receive(t, subA); got != r {
			t.Fatalf("A got %v", got)
		}
		// A keeps its place until it acquires
		if got := queue(); !slices.Equal(got, []string{"A", "B"}) {
			t.Fatalf("queue after the release %v, want [A B]", got)
		}
		lease(t)(acquireQueued(ctx, s, r, "oA", ids.next(), "A", false))
		if got := queue(); !slices.Equal(got, []string{"B"}) {
			t.Fatalf("queue after A acquired %v, want [B]", got)
		}
		// A releases with waiters of its own, but is not queued: B is told
		rel := request(r, "oA", ids.next(), 0)
		if _, handed := handOff(ctx, t, s, rel, "A"); handed {
			t.Fatal("A's release handed the lease to A's waiters, with A not queued")
		}
		if got := receive(t, subB); got != r {
			t.Fatalf("B got %v", got)
		}
		if got := queue(); !slices.Equal(got, []string{"B"}) {
			t.Fatalf("queue %v, want [B] until B acquires", got)
		}
		// B takes it and stays queued for more of its waiters; its own
		// release hands over at home: nothing is published
		lease(t)(acquireQueued(ctx, s, r, "oB", ids.next(), "B", true))
		if got := queue(); !slices.Equal(got, []string{"B"}) {
			t.Fatalf("queue %v, want [B] (stays queued)", got)
		}
		rel = request(r, "oB", ids.next(), 0)
		if _, handed := handOff(ctx, t, s, rel, "B"); !handed {
			t.Fatal("B's release did not hand the lease to B's waiters, with B first queued")
		}
		if got := queue(); !slices.Equal(got, []string{"B"}) {
			t.Fatalf("queue %v, want [B] after the hand-over at home, until B's waiter acquires", got)
		}
		lease(t)(acquireQueued(ctx, s, r, "oB2", ids.next(), "B", false))
		if got := queue(); len(got) != 0 {
			t.Fatalf("queue %v, want empty once B's waiter acquired", got)
		}
		// with nobody queued, a release is announced to every subscriber:
		// the next message B and A get is other's, not r's
		lease(t)(s.Acquire(ctx, request(other, "x", ids.next(), time.Minute)))
		lease(t)(s.Release(ctx, request(other, "x", ids.next(), 0)))
		if got := receive(t, subB); got != other {
			t.Fatalf("B got %v, want %v (nothing for the hand-over at home)", got, other)
		}
		if got := receive(t, subA); got != other {
			t.Fatalf("A got %v, want %v", got, other)
		}

		// a coordinator whose waiters gave up leaves the queue
		lease(t)(s.Release(ctx, request(r, "oB2", ids.next(), 0)))
		lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
		if _, err := acquireQueued(ctx, s, r, "oA", ids.next(), "A", false); !errors.Is(err, coordinator.ErrConflict) {
			t.Fatal(err)
		}
		if err := s.Unqueue(ctx, r, "A"); err != nil {
			t.Fatal(err)
		}
		if got := queue(); len(got) != 0 {
			t.Fatalf("queue after Unqueue %v", got)
		}
	})
}

func TestWaiterQueueNotificationsOff(t *testing.T) {
	b := newMiniBackend(t)
	ctx := t.Context()
	s := redisstore.New(b.client, redisstore.WithNotifications(false))
	r := coordinator.Plan("quiet")
	lease(t)(s.Acquire(ctx, request(r, "holder", "1", time.Minute)))
	if _, err := acquireQueued(ctx, s, r, "w", "2", "A", false); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatal(err)
	}
	if b.mini.Exists(s.Layout().QueueKey(r)) {
		t.Fatal("a waiter was queued without notifications")
	}
	if err := s.Unqueue(ctx, r, "A"); err != nil {
		t.Fatal(err)
	}
	bad := redisstore.New(b.client, redisstore.WithPrefix("bad{"))
	if err := bad.Unqueue(ctx, r, "A"); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("Unqueue on a misconfigured store: %v", err)
	}
}

// queueOf returns the waiter ids queued for r, first queued first.
func queueOf(t *testing.T, b *backend, s *redisstore.Store, r coordinator.Resource) []string {
	t.Helper()
	v, err := b.client.Get(t.Context(), s.Layout().QueueKey(r)).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return waiterIDs(t, must[string](t)(v, err))
}

// waiterIDs returns the waiter ids of queue q, whose words are
// "<waiter>@<deadline_ms>", failing t on a word of another form.
func waiterIDs(t *testing.T, q string) []string {
	t.Helper()
	var ids []string
	for _, w := range strings.Fields(q) {
		at := strings.LastIndexByte(w, '@')
		if _, err := strconv.ParseInt(w[at+1:], 10, 64); at < 1 || err != nil {
			t.Fatalf("queue word %q is not <waiter>@<deadline>", w)
		}
		ids = append(ids, w[:at])
	}
	return ids
}

// TestWaiterQueueSkipsDeadWaiter: a queued coordinator that died (nobody
// subscribes to its channel) does not swallow the release: the next
// queued coordinator is told.
func TestWaiterQueueSkipsDeadWaiter(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		live := must[coordinator.Subscription](t)(s.ReleasesFor(ctx, "live"))
		defer live.Close()
		var ids reqIDs
		r := coordinator.Plan("dead-head")
		lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
		for _, w := range []string{"dead", "live"} {
			if _, err := acquireQueued(ctx, s, r, "o"+w, ids.next(), w, false); !errors.Is(err, coordinator.ErrConflict) {
				t.Fatalf("waiting acquire of %s: %v", w, err)
			}
		}
		lease(t)(s.Release(ctx, request(r, "holder", ids.next(), 0)))
		if got := receive(t, live); got != r {
			t.Fatalf("live got %v", got)
		}
		// live keeps its place until it acquires
		if got := queueOf(t, b, s, r); !slices.Equal(got, []string{"live"}) {
			t.Fatalf("queue %v, want [live]", got)
		}
	})
}

// TestUnqueuePassesHandOff: a coordinator whose last waiter left after a
// release had picked it (its notification found nobody waiting) passes
// the hand-off to the next queued coordinator when it leaves the queue,
// unless the lease was taken again meanwhile.
func TestUnqueuePassesHandOff(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		gone := must[coordinator.Subscription](t)(s.ReleasesFor(ctx, "gone"))
		defer gone.Close()
		next := must[coordinator.Subscription](t)(s.ReleasesFor(ctx, "next"))
		defer next.Close()
		var ids reqIDs
		r, other := coordinator.Plan("passed-on"), coordinator.Plan("other")
		queueBoth := func() {
			t.Helper()
			lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
			for _, w := range []string{"gone", "next"} {
				if _, err := acquireQueued(ctx, s, r, "o"+w, ids.next(), w, false); !errors.Is(err, coordinator.ErrConflict) {
					t.Fatalf("waiting acquire of %s: %v", w, err)
				}
			}
			lease(t)(s.Release(ctx, request(r, "holder", ids.next(), 0)))
			if got := receive(t, gone); got != r {
				t.Fatalf("gone got %v", got)
			}
		}

		// the lease is free when gone leaves: next is told, and keeps its
		// place until it acquires
		queueBoth()
		if err := s.Unqueue(ctx, r, "gone"); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, next); got != r {
			t.Fatalf("next got %v", got)
		}
		if got := queueOf(t, b, s, r); !slices.Equal(got, []string{"next"}) {
			t.Fatalf("queue %v, want [next]", got)
		}
		lease(t)(acquireQueued(ctx, s, r, "onext", ids.next(), "next", false))
		if got := queueOf(t, b, s, r); len(got) != 0 {
			t.Fatalf("queue %v after next acquired, want empty", got)
		}
		lease(t)(s.Release(ctx, request(r, "onext", ids.next(), 0)))
		if got := receive(t, next); got != r {
			t.Fatalf("next got %v of its own release", got)
		}

		// held when gone leaves: next stays queued for the release
		lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
		for _, w := range []string{"gone", "next"} {
			if _, err := acquireQueued(ctx, s, r, "o"+w, ids.next(), w, false); !errors.Is(err, coordinator.ErrConflict) {
				t.Fatalf("waiting acquire of %s: %v", w, err)
			}
		}
		if err := s.Unqueue(ctx, r, "gone"); err != nil {
			t.Fatal(err)
		}
		if got := queueOf(t, b, s, r); !slices.Equal(got, []string{"next"}) {
			t.Fatalf("queue %v, want [next]", got)
		}
		lease(t)(s.Acquire(ctx, request(other, "x", ids.next(), time.Minute)))
		lease(t)(s.Release(ctx, request(other, "x", ids.next(), 0)))
		if got := receive(t, next); got != other {
			t.Fatalf("next got %v, want %v (nothing for a held lease)", got, other)
		}
		lease(t)(s.Release(ctx, request(r, "holder", ids.next(), 0)))
		if got := receive(t, next); got != r {
			t.Fatalf("next got %v", got)
		}
	})
}

// TestReleaseMemoOwnerWithSpaces: the release memo ("<token> <acquired_at>
// <expires_at> <owner>") gives a retried release back an owner with
// spaces whole.
func TestReleaseMemoOwnerWithSpaces(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		r := coordinator.Plan("memo")
		for i, owner := range []string{"worker 7 (eu west)", " lead", "trail ", "a  b", "élan 12 34 56"} {
			l := lease(t)(s.Acquire(ctx, request(r, owner, "acq-"+strconv.Itoa(i), time.Minute)))
			rel := request(r, owner, "rel-"+strconv.Itoa(i), 0)
			first := lease(t)(s.Release(ctx, rel))
			again := lease(t)(s.Release(ctx, rel))
			if again.Owner != owner || first.Owner != owner || again.Token != l.Token || again.Count != 0 ||
				!again.AcquiredAt.Equal(l.AcquiredAt) || !again.ExpiresAt.Equal(l.ExpiresAt) {
				t.Fatalf("owner %q: release %+v, retried %+v, lease %+v", owner, first, again, l)
			}
		}
	})
}

// TestWaiterIDWithSpaces: a waiter id the space-separated queue cannot
// hold is not queued (its coordinator hears of releases on the partition
// channel), and its Unqueue leaves the queue alone.
func TestWaiterIDWithSpaces(t *testing.T) {
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.newStore(t, redisstore.WithPartitions(1))
		var ids reqIDs
		r := coordinator.Plan("spaced")
		lease(t)(s.Acquire(ctx, request(r, "holder", ids.next(), time.Minute)))
		for _, w := range []string{"a", "b", "a b", "c\td", ""} {
			if _, err := acquireQueued(ctx, s, r, "o", ids.next(), w, false); !errors.Is(err, coordinator.ErrConflict) {
				t.Fatalf("waiting acquire of %q: %v", w, err)
			}
		}
		if got := queueOf(t, b, s, r); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("queue %q, want [a b]", got)
		}
		if err := s.Unqueue(ctx, r, "a b"); err != nil {
			t.Fatal(err)
		}
		if got := queueOf(t, b, s, r); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("queue after Unqueue(\"a b\") %q, want [a b]", got)
		}
	})
}
