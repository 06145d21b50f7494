package testredis_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func proxied(t *testing.T, timeout time.Duration) (*testredis.Server, *testredis.Proxy, *redis.Client) {
	t.Helper()
	srv := testredis.Start(t)
	p := testredis.NewProxy(t, srv.Addr)
	c := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, DialTimeout: timeout,
		ReadTimeout: timeout, WriteTimeout: timeout, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return srv, p, c
}

func ping(c *redis.Client) (time.Duration, error) {
	start := time.Now()
	err := c.Ping(context.Background()).Err()
	return time.Since(start), err
}

func TestProxyModes(t *testing.T) {
	_, p, c := proxied(t, 3*time.Second)
	if _, err := ping(c); err != nil {
		t.Fatalf("pass: %v", err)
	}
	if p.Mode() != "pass" {
		t.Fatalf("mode %q, want pass", p.Mode())
	}

	t.Run("delay", func(t *testing.T) {
		p.Delay(60*time.Millisecond, 10*time.Millisecond)
		defer p.Heal()
		d, err := ping(c)
		if err != nil {
			t.Fatal(err)
		}
		// request and reply each wait 50-70 ms
		if d < 100*time.Millisecond {
			t.Fatalf("ping took %v through a 60±10 ms delay each way", d)
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		p.Blackhole()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := c.Ping(ctx).Err()
		var ne net.Error
		if !errors.Is(err, context.DeadlineExceeded) && (!errors.As(err, &ne) || !ne.Timeout()) {
			t.Fatalf("ping through a blackhole: %v, want a timeout", err)
		}
		p.Heal()
		if _, err := ping(c); err != nil {
			t.Fatalf("after heal: %v", err)
		}
	})

	t.Run("cut", func(t *testing.T) {
		p.Cut()
		if p.Mode() != "cut" {
			t.Fatalf("mode %q", p.Mode())
		}
		d, err := ping(c)
		if err == nil {
			t.Fatal("ping through a cut proxy succeeded")
		}
		if d > time.Second {
			t.Fatalf("a cut connection failed after %v, want at once", d)
		}
		if st := p.Stats(); st.Cut+st.Refused == 0 {
			t.Fatalf("stats %+v count no cut connection", st)
		}
		p.Heal()
		if _, err := ping(c); err != nil {
			t.Fatalf("after heal: %v", err)
		}
	})

	t.Run("drop", func(t *testing.T) {
		p.Drop(1)
		if _, err := ping(c); err == nil {
			t.Fatal("ping with every chunk dropped succeeded")
		}
		if p.Stats().Dropped == 0 {
			t.Fatalf("no drop counted: %+v", p.Stats())
		}
		p.Drop(0)
		if _, err := ping(c); err != nil {
			t.Fatalf("after drop 0: %v", err)
		}
	})

	t.Run("drop replies", func(t *testing.T) {
		ctx := context.Background()
		p.DropReplies(1)
		if err := c.Incr(ctx, "replies").Err(); err == nil {
			t.Fatal("INCR with every reply dropped succeeded")
		}
		p.Heal()
		// the request was applied, only its reply was lost
		if n, err := c.Get(ctx, "replies").Int(); err != nil || n != 1 {
			t.Fatalf("replies = %d, %v; want 1", n, err)
		}
		if p.Stats().RepliesDropped == 0 {
			t.Fatalf("no reply drop counted: %+v", p.Stats())
		}
	})
}

// A request held by a blackhole is applied when the proxy heals, even
// though its client gave up: the outcome of a timed-out request is
// unknown.
func TestBlackholedRequestAppliedAfterHeal(t *testing.T) {
	srv, p, c := proxied(t, 3*time.Second)
	direct := srv.Client(t)
	ctx := context.Background()
	if _, err := ping(c); err != nil { // a pooled connection, handshake done
		t.Fatal(err)
	}
	p.Blackhole()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := c.Incr(tctx, "n").Err(); err == nil {
		t.Fatal("INCR through a blackhole succeeded")
	}
	if n, _ := direct.Get(ctx, "n").Int(); n != 0 {
		t.Fatalf("n = %d before heal", n)
	}
	p.Heal()
	testutil.Eventually(t, 5*time.Second, "the held INCR applied after heal", func() bool {
		n, _ := direct.Get(ctx, "n").Int()
		return n == 1
	})
}

func TestKillRestartPersistence(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		kept bool
	}{
		{"no persistence", nil, false},
		{"appendonly", []string{"--appendonly", "yes"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testredis.Start(t, tc.args...)
			c := srv.Client(t)
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			srv.Kill()
			if srv.Running() {
				t.Fatal("running after Kill")
			}
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			n, err := c.Exists(ctx, "k").Result()
			if err != nil {
				t.Fatal(err)
			}
			if (n == 1) != tc.kept {
				t.Fatalf("key kept = %v after kill -9, want %v", n == 1, tc.kept)
			}
		})
	}
}

func TestPauseAndFlush(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("GET answered after %v during a 300 ms CLIENT PAUSE", d)
	}
	if err := srv.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys after FlushAll", n)
	}
}
