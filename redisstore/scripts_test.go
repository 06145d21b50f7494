package redisstore_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
	"github.com/lockcoord/lockcoord/redisstore"
)

// contract is what a script's header documents: its KEYS and ARGV count.
type contract struct{ keys, argv int }

var slotRE = regexp.MustCompile(`\b(KEYS|ARGV)\[(\d+)\]`)

// readContract reads ../internal/scripts/<name>.lua and checks that its
// header documents KEYS[1..k] and ARGV[1..a] in order, a Reply line, and
// that the body uses no slot the header does not document.
func readContract(t *testing.T, name string) contract {
	t.Helper()
	src, err := os.ReadFile("../internal/scripts/" + name + ".lua")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	var header, body []string
	for i, l := range lines {
		if !strings.HasPrefix(l, "--") {
			header, body = lines[:i], lines[i:]
			break
		}
	}
	doc := map[string][]int{}
	for _, l := range header {
		if m := regexp.MustCompile(`^-- (KEYS|ARGV)\[(\d+)\] `).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[2])
			doc[m[1]] = append(doc[m[1]], n)
		}
	}
	for kind, ns := range doc {
		for i, n := range ns {
			if n != i+1 {
				t.Errorf("%s.lua header documents %s %v: want 1..%d in order", name, kind, ns, len(ns))
			}
		}
	}
	if !slices.ContainsFunc(header, func(l string) bool { return strings.HasPrefix(l, "-- Reply:") }) {
		t.Errorf("%s.lua header has no Reply: line", name)
	}
	for _, l := range body {
		if i := strings.Index(l, "--"); i >= 0 {
			l = l[:i]
		}
		for _, m := range slotRE.FindAllStringSubmatch(l, -1) {
			n, _ := strconv.Atoi(m[2])
			if n < 1 || n > len(doc[m[1]]) {
				t.Errorf("%s.lua uses %s[%d], which its header does not document", name, m[1], n)
			}
		}
	}
	return contract{keys: len(doc["KEYS"]), argv: len(doc["ARGV"])}
}

// evalRecorder records the KEYS and ARGV counts of every script call.
type evalRecorder struct {
	mu    sync.Mutex
	calls map[string][][2]int // script hash -> {keys, argv}
}

func (h *evalRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *evalRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *evalRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			args := cmd.Args()
			id, _ := args[1].(string)
			if name == "eval" {
				for _, s := range scripts.All() {
					if strings.HasPrefix(id, "-- ") && redis.NewScript(id).Hash() == s.Hash() {
						id = s.Hash()
					}
				}
			}
			nk, _ := args[2].(int)
			h.mu.Lock()
			h.calls[id] = append(h.calls[id], [2]int{nk, len(args) - 3 - nk})
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

// TestScriptContracts: the store calls each script with exactly the KEYS
// and ARGV its header documents.
func TestScriptContracts(t *testing.T) {
	want := map[string]contract{}
	for name, s := range map[string]*redis.Script{"acquire": scripts.Acquire(), "renew": scripts.Renew(), "release": scripts.Release(), "unqueue": scripts.Unqueue()} {
		want[s.Hash()] = readContract(t, name)
	}
	b := newMiniBackend(t)
	ctx := t.Context()
	rec := &evalRecorder{calls: map[string][][2]int{}}
	b.client.AddHook(rec)
	s := redisstore.New(b.client)
	r := coordinator.Plan("contract")
	var ids reqIDs
	lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
	lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
	lease(t)(s.Renew(ctx, request(r, "w1", ids.next(), time.Minute)))
	lease(t)(s.Release(ctx, request(r, "w1", ids.next(), 0)))
	lease(t)(s.ForceRelease(ctx, r, ids.next()))
	lease(t)(s.Acquire(ctx, request(r, "w1", ids.next(), time.Minute)))
	must[int](t)(s.ReleaseAll(ctx, "w1", ids.next()))
	if err := s.Unqueue(ctx, r, "A"); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for hash, c := range want {
		calls := rec.calls[hash]
		if len(calls) == 0 {
			t.Errorf("script %s was never called", hash)
		}
		for _, got := range calls {
			if got != [2]int{c.keys, c.argv} {
				t.Errorf("script %s called with %d KEYS and %d ARGV, its header documents %d and %d", hash, got[0], got[1], c.keys, c.argv)
			}
		}
	}
	for hash := range rec.calls {
		if _, ok := want[hash]; !ok {
			t.Errorf("unknown script %s called", hash)
		}
	}
}

// TestScriptsAll: All lists every script once, and each loads under the
// hash Run uses for EVALSHA.
func TestScriptsAll(t *testing.T) {
	all := scripts.All()
	if len(all) != 6 || all[0] != scripts.Acquire() || all[1] != scripts.Renew() || all[2] != scripts.Release() ||
		all[3] != scripts.Unqueue() || all[4] != scripts.AcquireAll() || all[5] != scripts.Expire() {
		t.Fatalf("All() = %v, want Acquire, Renew, Release, Unqueue, AcquireAll, Expire", all)
	}
	onBoth(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		if err := b.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var hashes []string
		for _, s := range scripts.All() {
			if got := must[string](t)(s.Load(ctx, b.client).Result()); got != s.Hash() {
				t.Fatalf("SCRIPT LOAD = %s, want %s", got, s.Hash())
			}
			hashes = append(hashes, s.Hash())
		}
		exists := must[[]bool](t)(b.client.ScriptExists(ctx, hashes...).Result())
		if !slices.Equal(exists, []bool{true, true, true, true, true, true}) {
			t.Fatalf("SCRIPT EXISTS = %v", exists)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(hashes)))) != 6 {
			t.Fatalf("scripts share a hash: %v", hashes)
		}
	})
}
