package coordinator

import "time"

// SetPollForTest sets the waiters' fallback polling delays and returns a
// function that restores them.
func SetPollForTest(min, minNotify time.Duration) (restore func()) {
	a, b := pollMin, pollMinNotify
	pollMin, pollMinNotify = min, minNotify
	return func() { pollMin, pollMinNotify = a, b }
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
