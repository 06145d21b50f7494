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

	// set by the Coordinator on leases it got from Acquire and Renew: the
	// TTL asked for, and when the request was sent (worker's monotonic
	// clock), from which a keep-alive measures its deadline.
	ttl  time.Duration
	sent time.Time
}

// Held reports whether the lease still had holds when it was reported.
func (l Lease) Held() bool { return l.Count > 0 }
