package coordinator

import (
	"context"
	"fmt"
)

// Watch delivers the events of the leases on r that happen after Watch
// returned (see Event), until ctx ends or Close starts; the channel is
// closed then. The store must be a Watcher, or the error wraps
// ErrUnsupported: redisstore reads its audit outbox, so a store with the
// outbox switched off cannot watch.
//
// A reader that falls more than EventBuffer events behind blocks nobody:
// it gets an EventGap in place of what it missed, as it does when the
// store lost or trimmed events it had not read. A gap is never silent;
// after one, read the current state (Inspect, Holders).
func (c *Coordinator) Watch(ctx context.Context, r Resource) (<-chan Event, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return c.watch(ctx, r)
}

// WatchType is Watch of every resource of one type.
func (c *Coordinator) WatchType(ctx context.Context, resourceType string) (<-chan Event, error) {
	if err := ValidateType(resourceType); err != nil {
		return nil, err
	}
	return c.watch(ctx, Resource{Type: resourceType})
}

func (c *Coordinator) watch(ctx context.Context, r Resource) (<-chan Event, error) {
	done, err := c.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	w, ok := c.store.(Watcher)
	if !ok {
		return nil, fmt.Errorf("coordinator: watch %s: %w: the store reports no events", watchName(r), ErrUnsupported)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := w.Watch(wctx, r)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer cancel()
		select {
		case <-c.closing:
		case <-wctx.Done():
		}
	}()
	return ch, nil
}

// watchName is r as a watch names it: "type/" for a whole type.
func watchName(r Resource) string {
	if r.ID == "" {
		return r.Type + "/"
	}
	return r.String()
}
