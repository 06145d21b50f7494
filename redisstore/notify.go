package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

var _ coordinator.Notifier = (*Store)(nil)

// Health checking of an idle subscription connection: after healthEvery
// without a message the subscription sends PING; when no reply comes
// within another healthEvery the connection is replaced.
var healthEvery = 5 * time.Second

// Releases implements coordinator.Notifier: it subscribes to the release
// channel of every partition and returns once Redis confirmed the
// subscriptions. Elsewhere than on Cluster that is one SUBSCRIBE on one
// connection. On Cluster it is sharded pub/sub, and SSUBSCRIBE takes only
// channels of one slot, so each partition's channel gets a subscription
// (a connection to the master of its slot) of its own: P connections for
// P partitions.
//
// A lost connection is reopened and resubscribed; on Cluster, when a
// failover or resharding moves a partition's slot, Redis ends the
// subscription (SUNSUBSCRIBE) and it is made again on the slot's new
// master. Notifications sent meanwhile are lost, which waiters cover by
// retrying.
func (s *Store) Releases(ctx context.Context) (coordinator.Subscription, error) {
	return s.subscribe(ctx, "")
}

// subscribe subscribes to the release notifications; with a waiter, also
// to those addressed to it (each partition's channel + ":" + waiter).
func (s *Store) subscribe(ctx context.Context, waiter string) (coordinator.Subscription, error) {
	if err := s.ready(ctx); err != nil {
		return nil, opError("subscribe to release notifications", err)
	}
	perPartition := make([][]string, s.layout.partitions)
	var channels []string
	for p := range perPartition {
		perPartition[p] = []string{s.layout.ReleaseChannel(p)}
		if waiter != "" {
			perPartition[p] = append(perPartition[p], s.layout.WaiterChannel(p, waiter))
		}
		channels = append(channels, perPartition[p]...)
	}
	sub := &subscription{out: make(chan coordinator.Resource, 64), done: make(chan struct{})}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		for _, chs := range perPartition {
			sub.shards = append(sub.shards, &shard{
				subscribe: func(ctx context.Context) *redis.PubSub { return cc.SSubscribe(ctx, chs...) },
				reload:    func() { cc.ReloadState(context.Background()) },
			})
		}
	} else {
		sub.shards = []*shard{{subscribe: func(ctx context.Context) *redis.PubSub {
			return s.client.Subscribe(ctx, channels...)
		}}}
	}
	for _, sh := range sub.shards {
		ps := sh.subscribe(ctx)
		sh.ps = ps
		if _, err := ps.Receive(ctx); err != nil {
			_ = sub.Close()
			return nil, opError("subscribe to release notifications", err)
		}
	}
	for _, sh := range sub.shards {
		sub.wg.Add(1)
		go sub.loop(sh)
	}
	return sub, nil
}

type subscription struct {
	shards    []*shard
	out       chan coordinator.Resource
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// shard is one subscription connection: the whole subscription, or on
// Cluster one partition's channel.
type shard struct {
	subscribe func(ctx context.Context) *redis.PubSub // a new subscription
	reload    func()                                  // refresh the Cluster slot map; nil elsewhere

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
}

// current returns the shard's PubSub.
func (sh *shard) current() *redis.PubSub {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.ps
}

// replace swaps the shard's PubSub for a new subscription and closes the
// old one; it returns nil once the shard is closed.
func (sh *shard) replace() *redis.PubSub {
	if sh.reload != nil {
		sh.reload()
	}
	ps := sh.subscribe(context.Background())
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		_ = ps.Close()
		return nil
	}
	old := sh.ps
	sh.ps = ps
	sh.mu.Unlock()
	_ = old.Close()
	return ps
}

func (sh *shard) close() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed || sh.ps == nil {
		sh.closed = true
		return nil
	}
	sh.closed = true
	err := sh.ps.Close()
	if errors.Is(err, redis.ErrClosed) {
		err = nil
	}
	return err
}

// loop reads the shard's messages until Close, keeping the subscription
// alive: go-redis reopens a broken connection (and resubscribes) on the
// next read; loop replaces a subscription Redis ended or a connection that
// stopped answering.
func (s *subscription) loop(sh *shard) {
	defer s.wg.Done()
	ps := sh.current()
	pinged, failures := false, 0
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), healthEvery)
		if s.isDone() {
			return
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() && !pinged:
				_ = ps.Ping(context.Background()) // the reply arrives as a message
				pinged = true
			case errors.As(err, &ne) && ne.Timeout():
				if ps = sh.replace(); ps == nil {
					return
				}
				pinged = false
			default:
				// go-redis reconnects on the next read; wait a little, and on
				// Cluster let the client learn where the slot went
				failures++
				if sh.reload != nil {
					sh.reload()
				}
				if !s.sleep(min(10*time.Millisecond<<min(failures, 6), time.Second)) {
					return
				}
			}
			continue
		}
		pinged, failures = false, 0
		switch m := msg.(type) {
		case *redis.Message:
			r, err := coordinator.ParseResource(m.Payload)
			if err != nil {
				continue // not ours
			}
			select {
			case s.out <- r:
			case <-s.done:
				return
			}
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				// Redis ended the subscription: the slot moved to another
				// node (failover, resharding); subscribe where it is now
				if ps = sh.replace(); ps == nil {
					return
				}
			}
		}
	}
}

func (s *subscription) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// sleep waits d or until Close; it reports whether the subscription is
// still open.
func (s *subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}

// Released implements coordinator.Subscription.
func (s *subscription) Released() <-chan coordinator.Resource { return s.out }

// Close implements coordinator.Subscription.
func (s *subscription) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		var errs []error
		for _, sh := range s.shards {
			errs = append(errs, sh.close())
		}
		s.wg.Wait()
		close(s.out)
		err = errors.Join(errs...)
	})
	return err
}
