package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/redisstore"
)

// result is the outcome of one lockctl invocation.
type result struct {
	code   int
	stdout string
	stderr string
}

// cli runs lockctl in-process with the environment env.
type cli struct {
	t     *testing.T
	env   map[string]string
	url   string         // --redis-url prepended to every call ("" for none)
	stdin io.Reader      // run's command's stdin
	sigs  chan os.Signal // signals run receives (instead of the process's)
}

func newCLI(t *testing.T, url string) *cli {
	return &cli{t: t, env: map[string]string{}, url: url}
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runCtx(context.Background(), args...)
}

func (c *cli) runCtx(ctx context.Context, args ...string) result {
	c.t.Helper()
	if c.url != "" {
		args = append([]string{"--redis-url", c.url}, args...)
	}
	var out, errb lockedBuffer
	a := newApp(c.stdin, &out, &errb, func(k string) string { return c.env[k] })
	a.sigs = c.sigs
	if a.sigs == nil {
		a.sigs = make(chan os.Signal) // never the test process's signals
	}
	code := a.execute(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes: run's command
// and lockctl's logger write to stderr at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// want fails the test unless the call exited with code; on a failure
// stderr must be exactly one line.
func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if code != ExitOK && r.stderr != "" {
		if n := strings.Count(r.stderr, "\n"); n != 1 || !strings.HasPrefix(r.stderr, "lockctl: ") {
			t.Fatalf("stderr is not one line starting with \"lockctl: \": %q", r.stderr)
		}
	}
	return r
}

// json decodes stdout into v.
func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
}

// jsonLines decodes stdout, one JSON object per line, into a slice.
func jsonLines[T any](t *testing.T, r result) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("stdout is not JSON lines: %v\n%s", err, r.stdout)
		}
		out = append(out, v)
	}
	if n := strings.Count(r.stdout, "\n"); n != len(out) {
		t.Fatalf("%d lines hold %d JSON objects: want one object per line\n%s", n, len(out), r.stdout)
	}
	return out
}

// newMiniredis starts a miniredis and returns it with its URL.
func newMiniredis(t *testing.T) (*miniredis.Miniredis, string) {
	t.Helper()
	mr := miniredis.RunT(t)
	return mr, "redis://" + mr.Addr() + "/0"
}

// storeOn returns a store on mr with the default prefix and partitions.
func storeOn(t *testing.T, mr *miniredis.Miniredis, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return redisstore.New(c, opts...)
}
