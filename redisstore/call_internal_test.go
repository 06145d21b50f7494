package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// failEval fails every EVAL with errEval.
type failEval struct{}

var errEval = errors.New("eval refused")

func (failEval) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (failEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "eval") {
			cmd.SetErr(errEval)
			return errEval
		}
		return next(ctx, cmd)
	}
}

// TestRunScript: runScript sends EVALSHA, and after NOSCRIPT sends the
// script itself with EVAL (never SCRIPT LOAD, which a worker's ACL user
// may not run), with its keys and arguments; a failed EVAL is its error.
func TestRunScript(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	script := redis.NewScript(`return KEYS[1] .. KEYS[2] .. ARGV[1] .. ARGV[2]`)
	v := "v"
	run := func() (string, error) {
		return runScript(ctx, c, script, append(evalArgs(script, 2, 2), "k", strArg{&v}, "a", strArg{&v})).Text()
	}
	var sent []string
	c.AddHook(record{&sent})
	if got, err := run(); err != nil || got != "kvav" {
		t.Fatalf("first run (NOSCRIPT, then EVAL) = %q, %v; want kvav", got, err)
	}
	if got, err := run(); err != nil || got != "kvav" {
		t.Fatalf("second run (EVALSHA) = %q, %v; want kvav", got, err)
	}
	if want := []string{"evalsha", "eval", "evalsha"}; !slices.Equal(sent, want) {
		t.Fatalf("commands sent %v, want %v: no SCRIPT LOAD, which a worker may not run", sent, want)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c.AddHook(failEval{})
	if _, err := run(); !errors.Is(err, errEval) {
		t.Fatalf("run with EVAL failing: %v, want %v", err, errEval)
	}
}

// record is a hook that records the scripting commands sent (EVAL,
// EVALSHA, SCRIPT), not a connection's own (HELLO, CLIENT).
type record struct{ names *[]string }

func (record) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r record) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); strings.HasPrefix(n, "eval") || n == "script" {
			*r.names = append(*r.names, n)
		}
		return next(ctx, cmd)
	}
}

func (record) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
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
