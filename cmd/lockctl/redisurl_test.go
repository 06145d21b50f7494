package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseRedisURL(t *testing.T) {
	cases := []struct {
		url, kind, addr string
		check           func(t *testing.T, rt *redisTarget)
	}{
		{"redis://127.0.0.1:6379/0", "standalone", "127.0.0.1:6379", nil},
		{"redis://user:pw@h:7000/3?dial_timeout=3s", "standalone", "h:7000", func(t *testing.T, rt *redisTarget) {
			if rt.simple.Username != "user" || rt.simple.Password != "pw" || rt.simple.DB != 3 || rt.simple.DialTimeout != 3*time.Second {
				t.Fatalf("options %+v", rt.simple)
			}
		}},
		{"rediss://h", "standalone", "h:6379", func(t *testing.T, rt *redisTarget) {
			if rt.simple.TLSConfig == nil || rt.simple.TLSConfig.ServerName != "h" {
				t.Fatal("rediss without TLS")
			}
		}},
		{"unix:///tmp/redis.sock?db=2", "standalone", "/tmp/redis.sock", func(t *testing.T, rt *redisTarget) {
			if rt.simple.Network != "unix" || rt.simple.DB != 2 {
				t.Fatalf("options %+v", rt.simple)
			}
		}},
		{"redis://s1:26379/1?master_name=mymaster&addr=s2:26379", "sentinel", "sentinel s1:26379,s2:26379 (master mymaster)", func(t *testing.T, rt *redisTarget) {
			if rt.failover.DB != 1 {
				t.Fatalf("failover %+v", rt.failover)
			}
		}},
		{"rediss+sentinel://s1:26379?master_name=m", "sentinel", "sentinel s1:26379 (master m)", func(t *testing.T, rt *redisTarget) {
			if rt.failover.TLSConfig == nil {
				t.Fatal("rediss+sentinel without TLS")
			}
		}},
		{"redis+cluster://c1:7000?addr=c2:7000&addr=c3:7000", "cluster", "cluster c1:7000,c2:7000,c3:7000", nil},
		{"rediss+cluster://u:p@c1:7000/", "cluster", "cluster c1:7000", func(t *testing.T, rt *redisTarget) {
			if rt.cluster.TLSConfig == nil || rt.cluster.Password != "p" {
				t.Fatalf("cluster %+v", rt.cluster)
			}
		}},
		{"redis://c1:7000?addr=c2:7000", "cluster", "cluster c1:7000,c2:7000", nil},
	}
	for _, c := range cases {
		rt, err := parseRedisURL(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if rt.kind != c.kind || rt.addr() != c.addr {
			t.Fatalf("%s: %s %q, want %s %q", c.url, rt.kind, rt.addr(), c.kind, c.addr)
		}
		if c.check != nil {
			c.check(t, rt)
		}
		cl := rt.client()
		switch c.kind {
		case "cluster":
			if _, ok := cl.(*redis.ClusterClient); !ok {
				t.Fatalf("%s: client %T", c.url, cl)
			}
		default:
			if _, ok := cl.(*redis.Client); !ok {
				t.Fatalf("%s: client %T", c.url, cl)
			}
		}
		_ = cl.Close()
	}
	for _, bad := range []string{
		"http://h", "redis+ring://h", "unix+cluster:///s", "redis+sentinel://h", "redis+cluster://h/2",
		"redis://h/x", "redis://h?nosuch=1", "redis://u:topsecret@h?nosuch=1", "%zz",
	} {
		_, err := parseRedisURL(bad)
		var ue *usageError
		if err == nil || !asUsage(err, &ue) {
			t.Fatalf("%s: %v, want a usage error", bad, err)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Fatalf("password in %q", err)
		}
	}
}

func asUsage(err error, ue **usageError) bool {
	return errors.As(err, ue)
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("hidden")
	log.Info().Str("k", "v").Dur("retry_in", 1600*time.Millisecond).Dur("took", 16759185*time.Nanosecond).Msg("shown")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["message"] != "shown" || m["k"] != "v" || m["level"] != "info" {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	// durations with their unit (issue 16.9), not retry_in=1600
	if m["retry_in"] != "1.6s" || m["took"] != "16.759185ms" {
		t.Fatalf("durations logged as %v and %v, want 1.6s and 16.759185ms", m["retry_in"], m["took"])
	}
	buf.Reset()
	log, err = newLogger(&buf, "DEBUG", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Dur("retry_in", 100*time.Millisecond).Msg("console line")
	if !strings.Contains(buf.String(), "console line") || strings.Contains(buf.String(), "{") || !strings.Contains(buf.String(), "retry_in=100ms") {
		t.Fatalf("console log %q", buf.String())
	}
	for _, bad := range [][2]string{{"", "json"}, {"loud", "json"}, {"info", "xml"}} {
		if _, err := newLogger(&buf, bad[0], bad[1]); err == nil {
			t.Fatalf("newLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
	// the logger reaches stderr through the global flags
	mr, url := newMiniredis(t)
	mr.Set("p:{99}:lock:plan:x", "junk")
	c := newCLI(t, url)
	c.env["LOCKCOORD_LOG_LEVEL"] = "debug"
	c.env["LOCKCOORD_LOG_FORMAT"] = "json"
	r := c.run("list", "--type", "plan", "--prefix", "p").want(t, ExitOK)
	m = nil
	if err := json.Unmarshal([]byte(r.stderr), &m); err != nil || m["key"] != "p:{99}:lock:plan:x" || m["level"] != "debug" {
		t.Fatalf("debug log of the skipped key on stderr: %q (%v)", r.stderr, err)
	}
	c.env["LOCKCOORD_LOG_LEVEL"] = "info"
	if r := c.run("list", "--prefix", "p").want(t, ExitOK); r.stderr != "" {
		t.Fatalf("debug line at level info: %q", r.stderr)
	}
}
