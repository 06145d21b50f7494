package testredis

import (
	"context"
	"fmt"
	"time"
)

// Pause runs CLIENT PAUSE for d in mode ALL: every client's commands,
// reads included, wait in the server until the pause ends (the pausing
// client's reply comes at once). Unlike Freeze, the process runs and
// keeps serving replication and the cluster bus.
func (s *Server) Pause(ctx context.Context, d time.Duration) error {
	if _, err := s.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL"); err != nil {
		return fmt.Errorf("testredis: client pause: %w", err)
	}
	return nil
}

// FlushAll deletes every key of the server, as a loss of its data would.
func (s *Server) FlushAll(ctx context.Context) error {
	if _, err := s.Do(ctx, "FLUSHALL"); err != nil {
		return fmt.Errorf("testredis: flushall: %w", err)
	}
	return nil
}
