package redisstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

var _ coordinator.Notifier = (*Store)(nil)

// Releases implements coordinator.Notifier: it subscribes to the release
// channel of every partition (sharded pub/sub, SSUBSCRIBE, on Cluster;
// plain SUBSCRIBE elsewhere) and returns once Redis confirmed the
// subscription. go-redis reconnects and resubscribes after a network
// error; notifications sent meanwhile are lost, which waiters cover by
// retrying.
func (s *Store) Releases(ctx context.Context) (coordinator.Subscription, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	channels := make([]string, s.partitions)
	for p := range channels {
		channels[p] = s.Channel(p)
	}
	var ps *redis.PubSub
	if s.cluster {
		ps = s.client.SSubscribe(ctx, channels...)
	} else {
		ps = s.client.Subscribe(ctx, channels...)
	}
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redisstore: subscribe to release notifications: %w", err)
	}
	sub := &subscription{ps: ps, out: make(chan coordinator.Resource, 64), done: make(chan struct{})}
	sub.wg.Add(1)
	go sub.loop(ps.Channel())
	return sub, nil
}

type subscription struct {
	ps        *redis.PubSub
	out       chan coordinator.Resource
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func (s *subscription) loop(in <-chan *redis.Message) {
	defer s.wg.Done()
	defer close(s.out)
	for {
		select {
		case <-s.done:
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			r, err := coordinator.ParseResource(m.Payload)
			if err != nil {
				continue // not ours
			}
			select {
			case s.out <- r:
			case <-s.done:
				return
			}
		}
	}
}

// Released implements coordinator.Subscription.
func (s *subscription) Released() <-chan coordinator.Resource { return s.out }

// Close implements coordinator.Subscription.
func (s *subscription) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.ps.Close()
		s.wg.Wait()
	})
	return err
}
