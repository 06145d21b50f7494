package coordinator

import "time"

// Lease is the state of a held resource as Redis reported it.
type Lease struct {
	Resource   Resource
	Owner      string
	Token      uint64    // fencing token of this acquisition
	Count      int       // hold count (re-entrancy depth); 0 once fully released
	AcquiredAt time.Time // Redis server time of the first acquisition
	ExpiresAt  time.Time // Redis server time the lease ends unless renewed
}

// Held reports whether the lease still had holds when it was reported.
func (l Lease) Held() bool { return l.Count > 0 }

// TTL returns how long the lease had left at now, by Redis time.
func (l Lease) TTL(now time.Time) time.Duration { return l.ExpiresAt.Sub(now) }
