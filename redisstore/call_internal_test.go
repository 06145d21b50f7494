package redisstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// failLoad fails every SCRIPT LOAD with errLoad.
type failLoad struct{}

var errLoad = errors.New("load refused")

func (failLoad) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failLoad) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (failLoad) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "script") {
			cmd.SetErr(errLoad)
			return errLoad
		}
		return next(ctx, cmd)
	}
}

// TestRunScript: runScript sends EVALSHA, and after NOSCRIPT loads the
// script and sends it once more; a failed load is its error.
func TestRunScript(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	script := redis.NewScript(`return KEYS[1] .. ARGV[1]`)
	run := func() (string, error) {
		return runScript(ctx, c, script, append(evalArgs(script, 1, 1), "k", "v")).Text()
	}
	if got, err := run(); err != nil || got != "kv" {
		t.Fatalf("first run (NOSCRIPT, loaded) = %q, %v; want kv", got, err)
	}
	if got, err := run(); err != nil || got != "kv" {
		t.Fatalf("second run (EVALSHA) = %q, %v; want kv", got, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c.AddHook(failLoad{})
	if _, err := run(); !errors.Is(err, errLoad) {
		t.Fatalf("run with SCRIPT LOAD failing: %v, want %v", err, errLoad)
	}
}

// TestStrArg: a strArg is written and printed as its string.
func TestStrArg(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	v := "value"
	cmd := redis.NewCmd(t.Context(), "set", "k", strArg{&v})
	if err := c.Process(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
	if got := mr.HGet("x", "y") + must(mr.Get("k")); got != "value" {
		t.Fatalf("written %q, want value", got)
	}
	if got := cmd.String(); !strings.Contains(got, "set k value") {
		t.Fatalf("printed %q, want it to hold set k value", got)
	}
	if argString(strArg{&v}) != "value" || argString("s") != "s" || argString(1) != "" {
		t.Fatal("argString of a strArg, a string, an int")
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
