package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisURLHelp documents the forms of --redis-url.
const redisURLHelp = `Redis URLs (go-redis forms, options as query parameters, e.g. dial_timeout=3s):
  redis://[user:password@]host:port[/db]         standalone
  rediss://[user:password@]host:port[/db]        standalone over TLS
  unix://[user:password@]/path/to/redis.sock?db=N
  redis://host:26379[/db]?master_name=M[&addr=host2:26379]
  redis+sentinel://host:26379?master_name=M      Sentinel (rediss: TLS)
  redis+cluster://host:7000[?addr=host2:7000]    Cluster (rediss+cluster: TLS)
  redis://host:7000?addr=host2:7000              Cluster (several addr, no master_name)`

// redisTarget is a parsed --redis-url.
type redisTarget struct {
	kind     string // "standalone", "sentinel" or "cluster"
	addrs    []string
	simple   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// parseRedisURL reads a --redis-url with go-redis's parsers: ParseURL for
// a standalone server, ParseFailoverURL for Sentinel (a master_name
// parameter or a redis+sentinel scheme), ParseClusterURL for Cluster (a
// redis+cluster scheme, or addr parameters without master_name). The
// error never repeats the password.
func parseRedisURL(raw string) (*redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, usagef("bad --redis-url: %v", err)
	}
	bad := func(err error) (*redisTarget, error) {
		return nil, usagef("bad --redis-url %s: %v", u.Redacted(), err)
	}
	q := u.Query()
	scheme, mode, _ := strings.Cut(u.Scheme, "+")
	switch {
	case mode == "" && q.Has("master_name"):
		mode = "sentinel"
	case mode == "" && q.Has("addr") && scheme != "unix":
		mode = "cluster"
	}
	if scheme != "redis" && scheme != "rediss" && !(scheme == "unix" && mode == "") {
		return bad(fmt.Errorf("scheme must be redis, rediss or unix (with +sentinel or +cluster for redis and rediss), got %q", u.Scheme))
	}
	plain := *u
	plain.Scheme = scheme
	t := &redisTarget{}
	switch mode {
	case "":
		o, err := redis.ParseURL(plain.String())
		if err != nil {
			return bad(err)
		}
		t.kind, t.simple, t.addrs = "standalone", o, []string{o.Addr}
	case "sentinel":
		if !q.Has("master_name") {
			return bad(errors.New("a Sentinel URL needs the master_name parameter"))
		}
		o, err := redis.ParseFailoverURL(plain.String())
		if err != nil {
			return bad(err)
		}
		t.kind, t.failover, t.addrs = "sentinel", o, o.SentinelAddrs
	case "cluster":
		if u.Path != "" && u.Path != "/" && u.Path != "/0" {
			return bad(errors.New("a Cluster has only database 0"))
		}
		plain.Path = ""
		o, err := redis.ParseClusterURL(plain.String())
		if err != nil {
			return bad(err)
		}
		t.kind, t.cluster, t.addrs = "cluster", o, o.Addrs
	default:
		return bad(fmt.Errorf("unknown mode %q in scheme %q (sentinel or cluster)", mode, u.Scheme))
	}
	t.tlsDialer(q.Has("dial_timeout"))
	return t, nil
}

// tlsHandshakeTimeout bounds a TLS handshake with Redis when the URL sets
// no dial_timeout: a plain-text Redis never answers a TLS ClientHello,
// and the handshake would otherwise take the whole --timeout.
const tlsHandshakeTimeout = 2 * time.Second

// tlsDialer gives a TLS target a dialer that bounds the handshake
// (dial_timeout when the URL sets it, else tlsHandshakeTimeout) and
// reports its failure as a *tlsHandshakeError, which go-redis does not
// retry, saying whether the server speaks plain text.
func (t *redisTarget) tlsDialer(explicit bool) {
	var cfg *tls.Config
	var dial time.Duration
	var set func(func(context.Context, string, string) (net.Conn, error))
	switch t.kind {
	case "sentinel":
		cfg, dial, set = t.failover.TLSConfig, t.failover.DialTimeout, func(d func(context.Context, string, string) (net.Conn, error)) { t.failover.Dialer = d }
	case "cluster":
		cfg, dial, set = t.cluster.TLSConfig, t.cluster.DialTimeout, func(d func(context.Context, string, string) (net.Conn, error)) { t.cluster.Dialer = d }
	default:
		cfg, dial, set = t.simple.TLSConfig, t.simple.DialTimeout, func(d func(context.Context, string, string) (net.Conn, error)) { t.simple.Dialer = d }
	}
	if cfg == nil {
		return
	}
	if dial <= 0 {
		dial = 5 * time.Second // go-redis's default
	}
	handshake := tlsHandshakeTimeout
	if explicit {
		handshake = dial
	}
	var plain sync.Map // addr -> *tlsHandshakeError: a plain-text server, and when it was found
	set(func(ctx context.Context, network, addr string) (net.Conn, error) {
		// go-redis dials again at once after a failure (5 times): a server
		// found to speak plain text is not asked again for a while
		if v, ok := plain.Load(addr); ok && time.Since(v.(*tlsHandshakeError).at) < plainTextMemory {
			return nil, v.(*tlsHandshakeError)
		}
		conn, err := dialTLS(ctx, network, addr, cfg, dial, handshake)
		if te, ok := errors.AsType[*tlsHandshakeError](err); ok && te.plaintext {
			plain.Store(addr, te)
		}
		return conn, err
	})
}

// plainTextMemory is how long a TLS dialer remembers a server that
// answered in plain text.
const plainTextMemory = 30 * time.Second

// tlsHandshakeError is a TLS handshake with Redis that failed.
type tlsHandshakeError struct {
	addr      string
	plaintext bool      // the server answered a plain-text PING
	err       error     // the handshake's error
	at        time.Time // when it failed
}

func (e *tlsHandshakeError) Error() string {
	if e.plaintext {
		return fmt.Sprintf("TLS handshake with %s failed: the server speaks plain text (%v)", e.addr, e.err)
	}
	return fmt.Sprintf("TLS handshake with %s failed: %v", e.addr, e.err)
}

// Unwrap returns errTLSHandshake: not the network error, so that go-redis
// does not retry the dial.
func (e *tlsHandshakeError) Unwrap() error { return errTLSHandshake }

var errTLSHandshake = errors.New("TLS handshake failed")

// dialTLS connects to addr and shakes hands within handshake.
func dialTLS(ctx context.Context, network, addr string, cfg *tls.Config, dial, handshake time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: dial}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		c.ServerName = host
	}
	tc := tls.Client(conn, c)
	hctx, cancel := context.WithTimeout(ctx, handshake)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer to the TLS ClientHello within %s", handshake)
		}
		return nil, &tlsHandshakeError{addr: addr, err: err, plaintext: speaksPlainRedis(ctx, network, addr, d), at: time.Now()}
	}
	return tc, nil
}

// speaksPlainRedis reports whether addr answers a plain-text PING as
// Redis does (+PONG, or an error reply such as -NOAUTH).
func speaksPlainRedis(ctx context.Context, network, addr string, d *net.Dialer) bool {
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"))
}

// addr names the server(s) for messages.
func (t *redisTarget) addr() string {
	switch t.kind {
	case "sentinel":
		return "sentinel " + strings.Join(t.addrs, ",") + " (master " + t.failover.MasterName + ")"
	case "cluster":
		return "cluster " + strings.Join(t.addrs, ",")
	}
	return strings.Join(t.addrs, ",")
}

// client returns a new client of the target.
func (t *redisTarget) client() redis.UniversalClient {
	switch t.kind {
	case "sentinel":
		return redis.NewFailoverClient(t.failover)
	case "cluster":
		return redis.NewClusterClient(t.cluster)
	}
	return redis.NewClient(t.simple)
}
