package coordinator

import "time"

// Lease is the state of one owner's hold on a resource as Redis reported
// it. A shared resource has a lease per owner, each with its own count,
// token and expiry.
type Lease struct {
	Resource   Resource
	Owner      string
	Token      uint64    // fencing token of this acquisition
	Count      int       // hold count (re-entrancy depth); 0 once fully released
	AcquiredAt time.Time // Redis server time of the first acquisition
	ExpiresAt  time.Time // Redis server time the lease ends unless renewed
	Mode       Mode      // ModeExclusive or ModeShared
	Permits    int       // the cap recorded on a shared resource; 0: no cap
	Meta       string    // the holder's metadata (Meta), "" when none
	// Remaining is the time the lease had left when the store answered,
	// measured by the store's clock (0 when the store does not say).
	// Unlike ExpiresAt it needs no clock shared with the store: the lease
	// lasts at least Remaining from when the call was sent.
	Remaining time.Duration

	// set by the Coordinator on leases it got from Acquire and Renew: the
	// TTL asked for, and when the request was sent (worker's monotonic
	// clock), from which a keep-alive measures its deadline.
	ttl  time.Duration
	sent time.Time
}

// Held reports whether the lease still had holds when it was reported.
func (l Lease) Held() bool { return l.Count > 0 }
