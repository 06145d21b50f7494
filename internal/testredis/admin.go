package testredis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// admin runs fn with a short-lived direct client of the server (no retry),
// so that faults of a proxy in front of it do not apply.
func (s *Server) admin(ctx context.Context, fn func(c *redis.Client) error) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, PoolSize: 1})
	defer func() { _ = c.Close() }()
	return fn(c)
}

// Pause runs CLIENT PAUSE for d in mode ALL: every client's commands,
// reads included, wait in the server until the pause ends (the pausing
// client's reply comes at once).
func (s *Server) Pause(ctx context.Context, d time.Duration) error {
	return s.admin(ctx, func(c *redis.Client) error {
		if err := c.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
			return fmt.Errorf("testredis: client pause: %w", err)
		}
		return nil
	})
}

// FlushAll deletes every key of the server, as a loss of its data would.
func (s *Server) FlushAll(ctx context.Context) error {
	return s.admin(ctx, func(c *redis.Client) error {
		if err := c.FlushAll(ctx).Err(); err != nil {
			return fmt.Errorf("testredis: flushall: %w", err)
		}
		return nil
	})
}

// Running reports whether the server process runs (between Restart and
// Kill).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
