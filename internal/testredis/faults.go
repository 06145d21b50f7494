package testredis

import (
	"math/rand/v2"
	"net"
	"time"
)

// faults is the proxy's fault mode; the zero value passes bytes through.
type faults struct {
	blocked  bool          // blackhole: bytes wait
	cut      bool          // connections are reset, new ones refused
	delay    time.Duration // added to every chunk
	jitter   time.Duration // delay ± jitter, uniformly
	dropRate float64       // probability that a chunk resets its connection
	// probability that a reply is lost, its connection closed (EOF)
	replyDropRate float64
}

func (f *faults) delayFor(rng *rand.Rand) time.Duration {
	d := f.delay
	if f.jitter > 0 {
		d += time.Duration(rng.Int64N(int64(2*f.jitter)+1)) - f.jitter
	}
	return max(d, 0)
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	Accepted int // connections proxied
	Refused  int // connections reset at once while cut
	Dropped  int // connections reset by Drop
	Cut      int // connections reset by Cut
	// RepliesDropped counts replies lost by DropReplies.
	RepliesDropped int
}

// Mode returns a description of the current fault mode, for logs.
func (p *Proxy) Mode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.f.cut:
		return "cut"
	case p.f.blocked:
		return "blackhole"
	case p.f.dropRate > 0 || p.f.replyDropRate > 0:
		return "drop"
	case p.f.delay > 0 || p.f.jitter > 0:
		return "delay"
	}
	return "pass"
}

// Stats returns the counters of the proxy.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Heal ends every fault: bytes pass through again (those held by a
// blackhole are delivered), new connections are accepted.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.f = faults{}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Blackhole stops forwarding: requests and replies wait (the client sees
// timeouts), as in a partition, and are delivered on Heal.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.f.blocked = true
	p.mu.Unlock()
}

// Delay delays every chunk of bytes, both ways, by d ± jitter (uniform),
// keeping the order of the bytes of each direction. Zero d and jitter pass
// bytes at once.
func (p *Proxy) Delay(d, jitter time.Duration) {
	p.mu.Lock()
	p.f.delay, p.f.jitter = d, jitter
	p.mu.Unlock()
}

// Drop makes each chunk of bytes, either way, reset its connection with
// probability rate instead of being forwarded: a request or a reply is
// lost and the client sees the connection fail, not knowing whether its
// request was applied. Zero stops dropping.
func (p *Proxy) Drop(rate float64) {
	p.mu.Lock()
	p.f.dropRate = rate
	p.mu.Unlock()
}

// DropReplies makes each chunk of bytes from the server, with probability
// rate, close its connection instead of being forwarded: the request was
// applied, its reply is lost, and the client sees the connection end (EOF,
// which go-redis retries). Zero stops dropping.
func (p *Proxy) DropReplies(rate float64) {
	p.mu.Lock()
	p.f.replyDropRate = rate
	p.mu.Unlock()
}

// Cut resets every connection and refuses new ones until Heal, as when
// the server's host is unreachable with the network answering (the client
// sees errors at once, unlike Blackhole).
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.f.cut = true
	var links []*link
	for l := range p.conns {
		links = append(links, l)
	}
	p.stats.Cut += len(links)
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, l := range links {
		if tc, ok := l.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		l.close()
	}
}
