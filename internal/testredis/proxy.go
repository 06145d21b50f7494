package testredis

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP fault proxy between clients and a server, on a free
// loopback port. By default it passes bytes through; a test switches it to
// one of the fault modes (see faults.go) — Blackhole, Delay, Drop, Cut —
// and back with Heal.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu     sync.Mutex
	cond   *sync.Cond // signalled when blocked or closed changes
	closed bool
	conns  map[*link]struct{}
	wg     sync.WaitGroup
	f      faults
	stats  ProxyStats
	rng    *rand.Rand
}

// link is one proxied connection: the client's and the server's side.
type link struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// NewProxy starts a proxy to target and stops it when t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[*link]struct{}{},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.f = faults{}
	p.cond.Broadcast()
	for l := range p.conns {
		l.close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.f.cut
		if refuse {
			p.stats.Refused++
		}
		p.mu.Unlock()
		if refuse { // cut: the connection is reset at once
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			return
		}
		p.conns[l] = struct{}{}
		p.stats.Accepted++
		p.mu.Unlock()
		p.wg.Add(4)
		up, down := make(chan chunk, 64), make(chan chunk, 64)
		go p.read(l, c, up, false)
		go p.write(l, s, up)
		go p.read(l, s, down, true)
		go p.write(l, c, down)
	}
}

// chunk is data read from one side, to be written to the other side at
// (or after) at.
type chunk struct {
	data []byte
	at   time.Time
}

// read reads src (the server when reply) into ch, stamping each chunk with
// its delivery time; a dropped chunk closes the connection.
func (p *Proxy) read(l *link, src net.Conn, ch chan<- chunk, reply bool) {
	defer p.wg.Done()
	defer close(ch)
	defer p.forget(l)
	var last time.Time
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop := p.f.dropRate > 0 && p.rng.Float64() < p.f.dropRate
			lost := reply && p.f.replyDropRate > 0 && p.rng.Float64() < p.f.replyDropRate
			delay := p.f.delayFor(p.rng)
			if drop {
				p.stats.Dropped++
			}
			if lost {
				p.stats.RepliesDropped++
			}
			p.mu.Unlock()
			if drop {
				if tc, ok := l.client.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // the client sees a reset
				}
				l.close()
				return
			}
			if lost { // the client sees the connection end (EOF)
				l.close()
				return
			}
			at := time.Now().Add(delay)
			if at.Before(last) { // bytes of one direction stay in order
				at = last
			}
			last = at
			select {
			case ch <- chunk{data: buf[:n], at: at}:
			case <-l.done:
				return
			}
		}
		if err != nil { // io.EOF or a closed connection
			return
		}
	}
}

// write writes the chunks of ch to dst at their time, holding them while
// the proxy is blackholed.
func (p *Proxy) write(l *link, dst net.Conn, ch <-chan chunk) {
	defer p.wg.Done()
	defer l.close()
	for c := range ch {
		if d := time.Until(c.at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
		}
		p.mu.Lock()
		for p.f.blocked && !p.closed && !l.isDone() {
			p.cond.Wait()
		}
		closed := p.closed
		p.mu.Unlock()
		if closed || l.isDone() {
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}

func (l *link) isDone() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.conns, l)
	p.cond.Broadcast() // wake a writer of l waiting out a blackhole
	p.mu.Unlock()
}
