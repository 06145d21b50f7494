package benchmarks_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// delayProxy is a TCP proxy on a free loopback port that holds every
// chunk of bytes, both ways, for delay after it arrived before passing it
// on: a slower link, with the order of each connection's bytes kept and
// pipelined chunks overlapping as on a real network. It is this module's
// own, as lockcoord's internal/testredis.Proxy cannot be imported from
// here.
//
// The proxy runs in the benchmark's process and takes CPU a network card
// would not, so it is built to spend little: one goroutine reads each
// side of each connection, and a single delay line holds the chunks of
// every connection in arrival order (the delay being the same for all,
// that is also the order they fall due) and writes out together all those
// due when it wakes. It waits with a precise sleeper (a timerfd on
// Linux): Go's timers would round a 200 µs sleep up to a millisecond on
// an idle runtime.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	line   chan delayed
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	chunks atomic.Int64 // chunks passed on since resetStats
	added  atomic.Int64 // the delay they really had, nanoseconds in all
}

// delayed is a chunk of bytes read at read, to write to dst at due.
type delayed struct {
	data      []byte
	dst       net.Conn
	read, due time.Time
}

// startDelayProxy starts a proxy to target, closed when tb ends.
func startDelayProxy(tb testing.TB, target string, delay time.Duration) *delayProxy {
	tb.Helper()
	sl, err := newSleeper()
	if err != nil {
		tb.Fatalf("delay proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sl.close()
		tb.Fatalf("delay proxy: %v", err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay, line: make(chan delayed, 1<<14), conns: map[net.Conn]struct{}{}}
	var readers sync.WaitGroup
	p.wg.Go(func() {
		p.accept(&readers)
		readers.Wait()
		close(p.line)
	})
	p.wg.Go(func() {
		defer sl.close()
		p.deliver(sl)
	})
	tb.Cleanup(p.close)
	return p
}

// Addr is the address clients dial.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

func (p *delayProxy) resetStats() {
	p.chunks.Store(0)
	p.added.Store(0)
}

// meanDelay is the mean delay a chunk had since resetStats.
func (p *delayProxy) meanDelay() time.Duration {
	n := p.chunks.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(p.added.Load() / n)
}

func (p *delayProxy) accept(readers *sync.WaitGroup) {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		srv, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, srv) {
			return
		}
		readers.Go(func() { p.read(client, srv) })
		readers.Go(func() { p.read(srv, client) })
	}
}

// track registers a connection pair; false once the proxy is closed (the
// pair is closed then).
func (p *delayProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// read puts what src sends on the delay line, for dst. Either side
// failing closes both.
func (p *delayProxy) read(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			p.line <- delayed{data: append([]byte(nil), buf[:n]...), dst: dst, read: now, due: now.Add(p.delay)}
		}
		if err != nil {
			return
		}
	}
}

// deliver writes each chunk of the line once due, until the line is
// closed. A chunk whose connection is gone is dropped (its reader
// closes the other side).
func (p *delayProxy) deliver(sl *sleeper) {
	var (
		due  []delayed
		next *delayed // received, not yet due
	)
	for {
		c := next
		if c == nil {
			v, ok := <-p.line
			if !ok {
				return
			}
			c = &v
		}
		if err := sl.sleepUntil(c.due); err != nil {
			return
		}
		now := time.Now()
		due = append(due[:0], *c)
		next = nil
	gather:
		for next == nil {
			select {
			case v, ok := <-p.line:
				switch {
				case !ok:
					break gather
				case v.due.After(now):
					next = &v
				default:
					due = append(due, v)
				}
			default:
				break gather
			}
		}
		var added time.Duration
		for _, d := range due {
			added += now.Sub(d.read)
			if _, err := d.dst.Write(d.data); err != nil {
				_ = d.dst.Close()
			}
		}
		p.added.Add(int64(added))
		p.chunks.Add(int64(len(due)))
	}
}

// close stops accepting, cuts every connection and waits for the
// proxy's goroutines.
func (p *delayProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}
