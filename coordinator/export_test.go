package coordinator

import "time"

// SetPollForTest sets the waiters' fallback polling delays and returns a
// function that restores them. The backoff's ceiling (pollMax) is raised
// to minNotify when it is below: the backoff doubles up to the ceiling, so
// a ceiling of 1 s under a minNotify of a minute would cut a notified
// waiter's second fallback to 0.5-1 s, and a test that means "no polling
// here" would see an extra attempt whenever it runs longer than that.
func SetPollForTest(min, minNotify time.Duration) (restore func()) {
	a, b, m := pollMin, pollMinNotify, pollMax
	pollMin, pollMinNotify, pollMax = min, minNotify, max(pollMax, minNotify)
	return func() { pollMin, pollMinNotify, pollMax = a, b, m }
}

// WaitersForTest returns how many of c's waiters wait for r.
func (c *Coordinator) WaitersForTest(r Resource) int {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	if q := c.hub.queues[r]; q != nil {
		return len(q.ws)
	}
	return 0
}

// StoreForTest returns the store c drives.
func (c *Coordinator) StoreForTest() Store { return c.store }

// TTLForTest returns the TTL a call of c without the TTL option uses for
// the resource type.
func (c *Coordinator) TTLForTest(resourceType string) time.Duration {
	return c.cfg.ttlFor(resourceType)
}

// HubClosedForTest reports whether Close has closed c's hub of waiters.
func (c *Coordinator) HubClosedForTest() bool {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	return c.hub.closed
}
