package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

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
	return t, nil
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
