package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/scripts"
)

var _ coordinator.QueueNotifier = (*Store)(nil)

// queueLife is how long a resource's waiter queue lives after its last
// registration. A waiting coordinator registers again with each attempt,
// at least once per second (the waiters' longest fallback delay), so a
// queue outlives its live waiters; a waiter whose process died without
// leaving is dropped when a release picks it (that release's hand-off then
// waits for the others' fallback retry) or with the queue.
const queueLife = 5 * time.Second

// waiter returns the waiter argument of a script: none when notifications
// are off, since nobody would be told.
func (s *Store) waiter(w string) string {
	if !s.notify {
		return ""
	}
	return w
}

// waiterArg is waiter as a script argument; "" boxes without allocating.
func (s *Store) waiterArg(w string) any {
	if w = s.waiter(w); w == "" {
		return ""
	}
	return w
}

// ReleasesFor implements coordinator.QueueNotifier: Releases, plus the
// channels of notifications addressed to waiter, <partition channel>:<waiter>
// (on Cluster, both channels of a partition share its subscription).
func (s *Store) ReleasesFor(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	return s.subscribe(ctx, waiter)
}

// Unqueue implements coordinator.QueueNotifier.
func (s *Store) Unqueue(ctx context.Context, r coordinator.Resource, waiter string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	err := scripts.Unqueue.Run(ctx, s.client, []string{s.QueueKey(r)}, waiter).Err()
	s.refreshOnFailure(err)
	if err != nil {
		return fmt.Errorf("redisstore: unqueue %s from %s: %w", waiter, r, err)
	}
	return nil
}
