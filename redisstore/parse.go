package redisstore

import (
	"fmt"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// ParseHolders reads the fields of r's lease hash (HGETALL of
// Layout.LeaseKey(r)), whose key had pttl left at Redis time now, into
// the live holds Holders would report: one lease per owner, sorted by
// ExpiresAt then Owner, with Mode and Permits; none when the hash is
// empty (the resource is free). It lets a tool that reads many lease keys
// in one pipeline (lockctl list) report every holder of a shared
// resource. A hash no script could have written is ErrCorrupt.
func ParseHolders(r coordinator.Resource, fields map[string]string, pttl time.Duration, now time.Time) ([]coordinator.Lease, error) {
	ls, err := parseHash(r, fields, pttl, now)
	if err != nil {
		return nil, fmt.Errorf("%w: lease of %s: %w", ErrCorrupt, r, err)
	}
	return ls, nil
}
