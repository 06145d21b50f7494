package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
)

// Turning expiries into events (expire.lua).
var (
	// expireBatch is the most holds one expire.lua run takes.
	expireBatch int64 = 256
	// expireEvery is the mean period of the sweeps of a store with
	// watchers: each sweep waits expireEvery ± a quarter, jittered so that
	// the processes of a prefix do not sweep in step.
	expireEvery = 250 * time.Millisecond
)

// ExpireDue appends an "expired" event to partition p's stream for each
// hold of the partition whose expiry (Redis TIME) has passed, and
// returns how many it appended. The scripts keep every hold's expiry in
// the partition's expiry index (<prefix>:{<p>}:expiry, see
// docs/redis-keys.md); ExpireDue runs expire.lua, which reads that index
// alone, until no due hold is left. It is idempotent: each expired hold
// gives one event, whoever runs it and however often. A store runs it
// every 250 ms (jittered) on the partitions it has watchers of; a
// process that wants expiry events without watching (pgaudit's mirror)
// calls it periodically. With the outbox switched off it does nothing:
// there is no stream, and the scripts keep no index.
func (s *Store) ExpireDue(ctx context.Context, p int) (int, error) {
	if p < 0 || p >= s.layout.partitions {
		return 0, &coordinator.ValidationError{Field: "partition", Value: strconv.Itoa(p),
			Rule: fmt.Sprintf("must be from 0 to %d", s.layout.partitions-1)}
	}
	op := fmt.Sprintf("expire partition %d", p)
	if err := s.ready(ctx); err != nil {
		return 0, opError(op, err)
	}
	if !s.outbox {
		return 0, nil
	}
	pk := &s.parts[p]
	total := 0
	for {
		v, err := scripts.Expire().Run(ctx, s.client, []string{pk.expiry, pk.events}, s.maxLenArg, expireBatch).Slice()
		s.refreshOnFailure(err)
		if err != nil {
			return total, opError(op, err)
		}
		n, more, err := expireReply(v)
		if err != nil {
			return total, fmt.Errorf("redisstore: %s: %w", op, err)
		}
		total += n
		if !more {
			return total, nil
		}
	}
}

// expireReply reads expire.lua's reply {n, more}.
func expireReply(v []any) (n int, more bool, err error) {
	if len(v) == 2 {
		a, err1 := toInt(v[0])
		b, err2 := toInt(v[1])
		if err1 == nil && err2 == nil {
			return int(a), b != 0, nil
		}
	}
	return 0, false, fmt.Errorf("reply %v: want {events, more}", v)
}

// sweep runs ExpireDue on the reader's partitions every expireEvery
// (jittered) until the reader stops, then closes done. A failure counts
// in h.failures and is retried by the next sweep.
func (rd *reader) sweep(h *watchHub, done chan<- struct{}) {
	defer close(done)
	for rd.sleep(expireEvery*3/4 + rand.N(expireEvery/2+1)) {
		parts, _, _ := rd.snapshot(h)
		for _, p := range parts {
			if _, err := rd.s.ExpireDue(context.Background(), p); err != nil {
				h.failures.Add(1)
			}
		}
	}
}
