package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/chaos/internal/history"
	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/redisstore"
)

// world is one scenario's Redis: a throwaway redis-server, optionally
// behind a fault proxy, the stores of the workers on it with a key prefix
// of the scenario's own, and the recorder of their operations.
type world struct {
	t      *testing.T
	srv    *testredis.Server
	proxy  *testredis.Proxy // nil: clients connect directly
	prefix string
	rec    *history.Recorder
	admin  *redis.Client // direct, for checks
	stalls *stallMonitor // the test process's own stalls
	cfg    worldConfig
	wipeMu sync.Mutex
}

type worldConfig struct {
	serverArgs []string
	proxy      bool
	// client options of the workers (Addr is set by the world)
	client redis.Options
	store  []redisstore.Option
	// noRetries: the workers' clients never retry (MaxRetries -1), so a
	// failed dial means the command was never sent
	noRetries bool
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newWorld(t *testing.T, cfg worldConfig) *world {
	t.Helper()
	w := &world{t: t, cfg: cfg, prefix: "chaos-" + randomHex(4), stalls: newStallMonitor(t)}
	w.srv = testredis.Start(t, cfg.serverArgs...)
	if cfg.proxy {
		w.proxy = testredis.NewProxy(t, w.srv.Addr)
	}
	w.admin = redis.NewClient(&redis.Options{Addr: w.srv.Addr, MaxRetries: 3, DialTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = w.admin.Close() })
	var notSent func(error) bool
	if cfg.noRetries {
		w.cfg.client.MaxRetries = -1
		notSent = neverSent
	}
	w.rec = history.NewRecorder(notSent)
	return w
}

// neverSent reports errors after which a client that never retries did
// not send its command: it could not connect, or got no connection from
// its pool.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// client returns a new client of a worker (through the proxy if any).
func (w *world) client() *redis.Client {
	o := w.cfg.client
	o.Addr = w.srv.Addr
	if w.proxy != nil {
		o.Addr = w.proxy.Addr
	}
	c := redis.NewClient(&o)
	w.t.Cleanup(func() { _ = c.Close() })
	return c
}

// store returns a store of the scenario on c, pipelined when the run
// asks for it (autoPipeline) and c is a client WithAutoPipeline takes.
func (w *world) store(c redis.UniversalClient) *redisstore.Store {
	opts := append([]redisstore.Option{redisstore.WithPrefix(w.prefix)}, w.cfg.store...)
	if _, ok := c.(*redis.Client); ok && autoPipeline() {
		opts = append(opts, redisstore.WithAutoPipeline())
	}
	return redisstore.New(c, opts...)
}

// layout returns the key layout of the scenario's stores.
func (w *world) layout() redisstore.Layout { return w.store(w.admin).Layout() }

// worker is one worker process: its own client, store and coordinator,
// its store calls recorded, and a pause switch that freezes its I/O.
type worker struct {
	id    int
	owner string
	rs    *redisstore.Store
	proc  *process
	c     *coordinator.Coordinator
}

func (w *world) worker(id int, opts ...coordinator.Option) *worker {
	rs := w.store(w.client())
	p := &process{}
	wk := &worker{id: id, owner: "worker-" + string(rune('a'+id%26)) + "-" + randomHex(2), rs: rs, proc: p}
	wk.c = coordinator.New(p.wrap(w.rec.Store(rs, id)), opts...)
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wk.c.Close(ctx)
	})
	return wk
}

// kill kills the server with SIGKILL and restarts it after down; without
// persistence the history records the loss of every key.
func (w *world) kill(down time.Duration, persistent bool) error {
	w.wipeMu.Lock()
	defer w.wipeMu.Unlock()
	start := time.Now()
	w.srv.Kill()
	time.Sleep(down) // how long the server stays down: part of the fault
	err := w.srv.Restart()
	if !persistent {
		w.rec.Wipe(start, time.Now())
	}
	return err
}

// flush runs FLUSHALL: the history records the loss of every key.
func (w *world) flush(ctx context.Context) error {
	start := time.Now()
	err := w.srv.FlushAll(ctx)
	w.rec.Wipe(start, time.Now())
	return err
}

// keys returns the keys of the server matching pattern.
func (w *world) keys(ctx context.Context, pattern string) ([]string, error) {
	var out []string
	iter := w.admin.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	slices.Sort(out)
	return out, iter.Err()
}

// check runs porcupine on the recorded history and fails t if it is not
// linearizable. maxDelay bounds how long after its call a request of
// unknown outcome can still be applied (see history.Options).
func (w *world) check(timeout, maxDelay time.Duration) history.Report {
	w.t.Helper()
	if *checkTimeout > 0 {
		timeout = *checkTimeout
	}
	rep := history.Check(w.rec.Ops(), w.rec.Wipes(), history.Options{Timeout: timeout, MaxDelay: maxDelay, Dir: history.TempDir()})
	ops, unknown := rep.Ops()
	if !rep.OK() {
		w.t.Errorf("history not linearizable (%d operations, %d unknown):\n%s", ops, unknown, rep)
	}
	// the errors of unknown outcome, by kind
	kinds := map[string]int{}
	for _, op := range w.rec.Ops() {
		if op.Output.Status == history.Unknown {
			kinds[errorKind(op.Err)]++
		}
	}
	if len(kinds) > 0 {
		w.t.Logf("  unknown outcomes by error: %v", kinds)
	}
	return rep
}

// process is a worker process that a test can pause, as a GC pause or a
// stopped VM would: calls to its store wait until the pause ends, and so
// do the replies of calls in flight.
type process struct {
	mu    sync.Mutex
	until time.Time
}

// Pause freezes the process's I/O for d.
func (p *process) Pause(d time.Duration) {
	p.mu.Lock()
	p.until = time.Now().Add(d)
	p.mu.Unlock()
}

// wait waits for the end of a pause, or of ctx.
func (p *process) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		left := time.Until(p.until)
		p.mu.Unlock()
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(left)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (p *process) wrap(s coordinator.Store) coordinator.Store {
	ps := &pausedStore{p: p, inner: s}
	if n, ok := s.(coordinator.Notifier); ok {
		return &pausedNotifier{pausedStore: ps, n: n}
	}
	return ps
}

type pausedStore struct {
	p     *process
	inner coordinator.Store
}

func call[T any](ctx context.Context, p *process, f func() (T, error)) (T, error) {
	var zero T
	if err := p.wait(ctx); err != nil {
		return zero, err // never sent
	}
	v, err := f()
	_ = p.wait(context.Background()) // the reply is read after the pause
	return v, err
}

func (s *pausedStore) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return call(ctx, s.p, func() (coordinator.Lease, error) { return s.inner.Acquire(ctx, req) })
}

func (s *pausedStore) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return call(ctx, s.p, func() (coordinator.Lease, error) { return s.inner.Renew(ctx, req) })
}

func (s *pausedStore) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return call(ctx, s.p, func() (coordinator.Lease, error) { return s.inner.Release(ctx, req) })
}

func (s *pausedStore) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	return call(ctx, s.p, func() (coordinator.Lease, error) { return s.inner.Inspect(ctx, r) })
}

func (s *pausedStore) ReleaseAll(ctx context.Context, owner, requestID string) (int, error) {
	return call(ctx, s.p, func() (int, error) { return s.inner.ReleaseAll(ctx, owner, requestID) })
}

func (s *pausedStore) AcquireAll(ctx context.Context, reqs []coordinator.Request) ([]coordinator.Lease, error) {
	return call(ctx, s.p, func() ([]coordinator.Lease, error) { return s.inner.AcquireAll(ctx, reqs) })
}

func (s *pausedStore) Holders(ctx context.Context, r coordinator.Resource) ([]coordinator.Lease, error) {
	return call(ctx, s.p, func() ([]coordinator.Lease, error) { return s.inner.Holders(ctx, r) })
}

type pausedNotifier struct {
	*pausedStore
	n coordinator.Notifier
}

func (s *pausedNotifier) Releases(ctx context.Context) (coordinator.Subscription, error) {
	return s.n.Releases(ctx)
}

// percentile returns the p-th percentile (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// clientOptions are the workers' client options: timeouts of d, the
// context's deadline respected.
func clientOptions(d time.Duration) redis.Options {
	return redis.Options{DialTimeout: d, ReadTimeout: d, WriteTimeout: d, ContextTimeoutEnabled: true}
}

// errorKind shortens an error to its kind, without addresses.
func errorKind(err error) string {
	if err == nil {
		return "nil"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}
