package redisstore

import (
	"context"
	"strconv"

	"github.com/lockcoord/lockcoord/coordinator"
)

// forcedScan is how many of a partition's latest events ForcedBy reads:
// a keep-alive asks within a renewal interval of the forced release, so
// its event is among the latest unless the partition took more changes
// than this meanwhile (then the loss is reported as an expiry).
const forcedScan = 1000

var (
	_ coordinator.Forcer        = (*Store)(nil)
	_ coordinator.ForceReporter = (*Store)(nil)
)

// ForcedBy implements coordinator.ForceReporter: it looks for the
// "forced" event of the lease on r with token among the latest events
// of r's partition (one XREVRANGE), and returns the operator it names.
// With the outbox off it cannot tell: forced is false.
func (s *Store) ForcedBy(ctx context.Context, r coordinator.Resource, token uint64) (by string, forced bool, err error) {
	if err := r.Validate(); err != nil {
		return "", false, err
	}
	if !s.outbox {
		return "", false, nil
	}
	if err := s.ready(ctx); err != nil {
		return "", false, opError("find the forced release of "+r.String(), err)
	}
	pk := &s.parts[s.layout.Partition(r)]
	msgs, err := s.client.XRevRangeN(ctx, pk.events, "+", "-", forcedScan).Result()
	s.refreshOnFailure(err)
	if err != nil {
		return "", false, opError("find the forced release of "+r.String(), err)
	}
	want := strconv.FormatUint(token, 10)
	for _, m := range msgs {
		v := m.Values
		if v["event"] == "forced" && v["type"] == r.Type && v["id"] == r.ID && v["token"] == want {
			by, _ := v["by"].(string)
			return by, true, nil
		}
	}
	return "", false, nil
}
