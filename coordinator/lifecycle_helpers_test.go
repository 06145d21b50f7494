package coordinator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// waitBound is how long a test waits for what must happen before it
// fails: a bound on a wait, not a timing assertion.
const waitBound = 30 * time.Second

// miniEnv is a coordinator on a miniredis of its own.
type miniEnv struct {
	mr    *miniredis.Miniredis
	rc    *redis.Client
	store *redisstore.Store
	c     *coordinator.Coordinator
}

func newMiniEnv(t *testing.T, opts ...coordinator.Option) *miniEnv {
	t.Helper()
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	s := redisstore.New(rc)
	c := coordinator.New(s, opts...)
	t.Cleanup(func() {
		_ = c.Close(context.Background())
		_ = rc.Close()
	})
	return &miniEnv{mr: mr, rc: rc, store: s, c: c}
}

// clock advances miniredis time along with the wall clock, so that keys
// expire as they would on a real Redis, until the returned stop is called.
func (e *miniEnv) clock(t *testing.T) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				e.mr.FastForward(now.Sub(last))
				last = now
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// events returns the event names in the partition stream of r.
func (e *miniEnv) events(t *testing.T, r coordinator.Resource) []string {
	t.Helper()
	msgs, err := e.rc.XRange(context.Background(), e.store.Layout().StreamKey(e.store.Layout().Partition(r)), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if m.Values["type"] == r.Type && m.Values["id"] == r.ID {
			out = append(out, m.Values["event"].(string))
		}
	}
	return out
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
