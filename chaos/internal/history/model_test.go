package history

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/goleak"

	"github.com/lockcoord/lockcoord/coordinator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var res = coordinator.Plan("1")

const base = 1_700_000_000_000 // Unix ms

// mk builds an operation of owner run between call and ret (ms after
// base); ret < 0 is an unknown outcome.
func mk(kind Kind, owner string, call, ret int64, out Output) Op {
	in := Input{Kind: kind, Owner: owner, TTL: 100, CallMs: base + call, RetMs: base + ret}
	op := Op{Resource: res, Input: in, Output: out, Call: time.UnixMilli(base + call), Return: time.UnixMilli(base + ret)}
	if ret < 0 {
		op.Input.RetMs, op.Return, op.Output = never, time.Time{}, Output{Status: Unknown}
	}
	return op
}

func acq(owner string, call, ret int64, count int, token uint64, at int64) Op {
	return mk(Acquire, owner, call, ret, Output{Status: OK, Holder: owner, Count: count, Token: token,
		AcquiredAt: base + at, ExpiresAt: base + at + 100})
}

func conflict(owner, holder string, call, ret int64, count int, token uint64, exp int64) Op {
	return mk(Acquire, owner, call, ret, Output{Status: Conflict, Holder: holder, Count: count, Token: token, ExpiresAt: base + exp})
}

func rel(owner string, call, ret int64, left int, token uint64) Op {
	return mk(Release, owner, call, ret, Output{Status: OK, Holder: owner, Count: left, Token: token})
}

func renewOK(owner string, call, ret int64, count int, token uint64, at int64) Op {
	return mk(Renew, owner, call, ret, Output{Status: OK, Holder: owner, Count: count, Token: token, ExpiresAt: base + at + 100})
}

func wipe(call, ret int64) Op {
	return Op{Client: -1, Input: Input{Kind: Wipe, CallMs: base + call, RetMs: base + ret},
		Call: time.UnixMilli(base + call), Return: time.UnixMilli(base + ret)}
}

func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ops   []Op
		wipes []Op
		want  porcupine.CheckResult
	}{
		{"hand-off", []Op{
			acq("a", 0, 2, 1, 10, 1),
			conflict("b", "a", 10, 12, 1, 10, 101),
			rel("a", 20, 22, 0, 10),
			acq("b", 30, 32, 1, 11, 31),
		}, nil, porcupine.Ok},
		{"two holders at once", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("b", 50, 52, 1, 11, 51),
		}, nil, porcupine.Illegal},
		{"taken after expiry", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("b", 200, 202, 1, 11, 201),
		}, nil, porcupine.Ok},
		{"conflict after expiry", []Op{
			acq("a", 0, 2, 1, 10, 1),
			conflict("b", "a", 200, 202, 1, 10, 101),
		}, nil, porcupine.Illegal},
		{"token backward", []Op{
			acq("a", 0, 2, 1, 10, 1),
			rel("a", 20, 22, 0, 10),
			acq("b", 30, 32, 1, 9, 31),
		}, nil, porcupine.Illegal},
		{"new lease after a wipe", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("b", 60, 62, 1, 11, 61),
		}, []Op{wipe(20, 40)}, porcupine.Ok},
		{"token backward after a wipe", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("b", 60, 62, 1, 9, 61),
		}, []Op{wipe(20, 40)}, porcupine.Illegal},
		{"unknown acquire applied", []Op{
			mk(Acquire, "a", 0, -1, Output{}),
			conflict("b", "a", 50, 52, 1, 10, 130),
		}, nil, porcupine.Ok},
		{"no acquire", []Op{
			conflict("b", "a", 50, 52, 1, 10, 60),
		}, nil, porcupine.Illegal},
		{"unknown acquire applied after the holder left", []Op{
			acq("b", 0, 2, 1, 10, 1),
			mk(Acquire, "a", 10, -1, Output{}),
			rel("b", 20, 22, 0, 10),
			conflict("c", "a", 40, 42, 1, 11, 130),
		}, nil, porcupine.Ok},
		{"unknown acquire's token was above the last", []Op{
			acq("b", 0, 2, 1, 10, 1),
			rel("b", 20, 22, 0, 10),
			mk(Acquire, "a", 30, -1, Output{}),
			conflict("c", "a", 40, 42, 1, 7, 130),
		}, nil, porcupine.Illegal},
		{"re-entrant counts", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("a", 10, 12, 2, 10, 1),
			rel("a", 20, 22, 1, 10),
			rel("a", 30, 32, 0, 10),
		}, nil, porcupine.Ok},
		{"release counted twice", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("a", 10, 12, 2, 10, 1),
			acq("a", 14, 16, 3, 10, 1),
			rel("a", 20, 22, 2, 10),
			rel("a", 30, 32, 0, 10),
		}, nil, porcupine.Illegal},
		{"unknown re-entry may count", []Op{
			acq("a", 0, 2, 1, 10, 1),
			mk(Acquire, "a", 10, -1, Output{}),
			rel("a", 20, 22, 1, 10),
			rel("a", 30, 32, 0, 10),
		}, nil, porcupine.Ok},
		{"unknown re-entry may not count", []Op{
			acq("a", 0, 2, 1, 10, 1),
			mk(Acquire, "a", 10, -1, Output{}),
			rel("a", 20, 22, 0, 10),
		}, nil, porcupine.Ok},
		{"unknown acquire applied too late", []Op{
			mk(Acquire, "a", 0, -1, Output{}),
			conflict("b", "a", 5000, 5002, 1, 10, 5090),
		}, nil, porcupine.Illegal},
		{"unknown release may count", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("a", 10, 12, 2, 10, 1),
			mk(Release, "a", 20, -1, Output{}),
			conflict("b", "a", 30, 32, 1, 10, 101),
		}, nil, porcupine.Ok},
		{"unknown release may not count", []Op{
			acq("a", 0, 2, 1, 10, 1),
			acq("a", 10, 12, 2, 10, 1),
			mk(Release, "a", 20, -1, Output{}),
			conflict("b", "a", 30, 32, 2, 10, 101),
		}, nil, porcupine.Ok},
		{"unknown acquire counts once", []Op{
			mk(Acquire, "a", 0, -1, Output{}),
			conflict("b", "a", 30, 32, 2, 10, 100),
		}, nil, porcupine.Illegal},
		{"two unknown acquires count twice at most", []Op{
			mk(Acquire, "a", 0, -1, Output{}),
			mk(Acquire, "a", 5, -1, Output{}),
			conflict("b", "a", 30, 32, 2, 10, 100),
			conflict("b", "a", 40, 42, 2, 10, 100),
		}, nil, porcupine.Ok},
		{"renewal keeps the lease", []Op{
			acq("a", 0, 2, 1, 10, 1),
			renewOK("a", 60, 62, 1, 10, 61),
			conflict("b", "a", 140, 142, 1, 10, 161),
		}, nil, porcupine.Ok},
		{"renewal of an expired lease", []Op{
			acq("a", 0, 2, 1, 10, 1),
			renewOK("a", 200, 202, 1, 10, 201),
		}, nil, porcupine.Illegal},
		{"renewal said free while held", []Op{
			acq("a", 0, 2, 1, 10, 1),
			mk(Renew, "a", 30, 32, Output{Status: Free}),
		}, nil, porcupine.Illegal},
		{"renewal said free after expiry", []Op{
			acq("a", 0, 2, 1, 10, 1),
			mk(Renew, "a", 130, 132, Output{Status: Free}),
			acq("b", 140, 142, 1, 11, 141),
		}, nil, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Check(tc.ops, tc.wipes, Options{Timeout: 10 * time.Second, MaxDelay: time.Second})
			if len(rep.Results) != 1 {
				t.Fatalf("%d results", len(rep.Results))
			}
			if got := rep.Results[0].Outcome; got != tc.want {
				t.Fatalf("check = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCheckDump: Check dumps the history of a resource it found illegal,
// and CheckDump reads it back and finds it illegal again, with the same
// explanation. With LOCKCOORD_HISTORY naming a history dumped by a failed
// scenario, it re-checks that one instead:
// LOCKCOORD_HISTORY=/tmp/lockcoord-history-.../history-....json go test
// -run TestCheckDump -v ./chaos/internal/history/
func TestCheckDump(t *testing.T) {
	path := os.Getenv("LOCKCOORD_HISTORY")
	if path == "" {
		ops := []Op{acq("a", 0, 2, 1, 10, 1), acq("b", 50, 52, 1, 11, 51)} // two holders at once
		rep := Check(ops, nil, Options{Timeout: time.Minute, Dir: t.TempDir()})
		if len(rep.Results) != 1 || rep.Results[0].Outcome != porcupine.Illegal || rep.Results[0].Dump == "" {
			t.Fatalf("Check = %+v, want one illegal result with its history dumped", rep.Results)
		}
		path = rep.Results[0].Dump
		defer func() {
			res, expl, err := CheckDump(path, time.Minute)
			if err != nil || res != porcupine.Illegal || expl != rep.Results[0].Explanation {
				t.Errorf("CheckDump = %s, %v, explanation %q; want illegal, as Check found (%q)", res, err, expl, rep.Results[0].Explanation)
			}
		}()
		if _, _, err := CheckDump(path+".missing", time.Minute); err == nil {
			t.Error("CheckDump of a missing file: no error")
		}
		return
	}
	res, expl, err := CheckDump(path, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s\n%s", path, res, expl)
}
