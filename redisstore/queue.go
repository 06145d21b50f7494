package redisstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
)

var _ coordinator.WaitQueue = (*Store)(nil)

// queueLife is how long a waiter keeps its place in a resource's waiter
// queue after its last attempt (the deadline of its queue word, see
// acquire.lua). A waiting coordinator tries again at least once per
// second (the waiters' longest fallback delay), so a live waiter keeps
// its place; a waiter whose process died without leaving loses it when a
// release passes it over (PUBLISH and SPUBLISH count the listeners) or,
// at the latest, queueLife after its last attempt (when the holder's
// lease expired instead of being released).
const queueLife = 5 * time.Second

// waiter returns the waiter argument of a script: none when notifications
// are off, since nobody would be told, nor for an id the space-separated
// queue cannot hold (empty words, spaces): such a waiter is not queued,
// and hears of releases on the partition channel.
func (s *Store) waiter(w string) string {
	if !s.notify || !validWaiter(w) {
		return ""
	}
	return w
}

// validWaiter reports whether w can be a word of a waiter queue.
func validWaiter(w string) bool {
	return w != "" && !strings.ContainsAny(w, " \t\n\r\v\f")
}

// waiterArg is waiter as a script argument; "" boxes without allocating.
func (s *Store) waiterArg(w string) any {
	if w = s.waiter(w); w == "" {
		return ""
	}
	return w
}

// ReleasesFor implements coordinator.WaitQueue: Releases, plus the
// channels of notifications addressed to waiter, <partition channel>:<waiter>
// (on Cluster, both channels of a partition share its subscription).
func (s *Store) ReleasesFor(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	return s.subscribe(ctx, waiter)
}

// Unqueue implements coordinator.WaitQueue. A waiter that is no
// longer queued, while the lease is free and others are queued, was taken
// out by the release that notified it, which its coordinator then did not
// use (its last waiter left meanwhile): Unqueue passes that release on to
// the next queued waiter, who would otherwise only learn of it by its
// fallback retry.
func (s *Store) Unqueue(ctx context.Context, r coordinator.Resource, waiter string) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := s.ready(ctx); err != nil {
		return opError(fmt.Sprintf("unqueue %s from %s", waiter, r), err)
	}
	if !validWaiter(waiter) {
		return nil // never queued
	}
	pk := &s.parts[s.layout.Partition(r)]
	err := scripts.Unqueue().Run(ctx, s.client, []string{queueKey(pk.tag, r), leaseKey(pk.tag, r)},
		waiter, s.noteArg, pk.released, r.String()).Err()
	s.refreshOnFailure(err)
	if err != nil {
		return opError(fmt.Sprintf("unqueue %s from %s", waiter, r), err)
	}
	return nil
}
