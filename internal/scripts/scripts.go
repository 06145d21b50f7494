package scripts

import (
	_ "embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed core.lua
	coreSrc string
	//go:embed lib.lua
	libSrc string
	//go:embed acquire.lua
	acquireSrc string
	//go:embed renew.lua
	renewSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed unqueue.lua
	unqueueSrc string
	//go:embed acquireall.lua
	acquireAllSrc string
	//go:embed expire.lua
	expireSrc string
)

// The scripts, each built and wrapped once (see build).
var (
	acquire = build(acquireSrc)
	renew   = build(renewSrc)
	release = build(releaseSrc)
	unqueue = build(unqueueSrc)
	expire  = build(expireSrc)
	// acquireall.lua calls acquire.lua, as a function, for each claim
	acquireAll = redis.NewScript(coreSrc + libSrc + "local function acquire_one(KEYS, ARGV)\n" +
		strings.Replace(acquireSrc, libMark, "\n", 1) + "\nend\n" + acquireAllSrc)
)

// libMark is the line of a script that ends its fast path: what comes
// before it runs before lib.lua's helpers are defined.
const libMark = "\n--@lib\n"

// build returns the script of src: the helpers of core.lua, src's fast
// path (its text before its libMark line, if it has one), the helpers
// of lib.lua, then the rest of src. A call that takes the fast path
// returns before Redis has defined lib.lua's helpers, each a closure
// made anew on every call of the script.
func build(src string) *redis.Script {
	fast, rest, ok := strings.Cut(src, libMark)
	if !ok {
		return redis.NewScript(coreSrc + libSrc + src)
	}
	return redis.NewScript(coreSrc + fast + "\n" + libSrc + rest)
}

// Acquire returns acquire.lua: take a free resource or re-enter the
// owner's lease. Run it with Run: EVALSHA, falling back to EVAL when
// Redis lost its script cache; so for the others.
func Acquire() *redis.Script { return acquire }

// Renew returns renew.lua: set the expiry of the owner's lease.
func Renew() *redis.Script { return renew }

// Release returns release.lua: drop one hold, every hold, or force a
// lease off.
func Release() *redis.Script { return release }

// Unqueue returns unqueue.lua: take a waiter out of a resource's waiter
// queue.
func Unqueue() *redis.Script { return unqueue }

// AcquireAll returns acquireall.lua: take every claim of an AcquireAll
// whose resources share a partition, all or nothing, in one script.
func AcquireAll() *redis.Script { return acquireAll }

// Expire returns expire.lua: turn the holds of a partition whose expiry
// passed into "expired" events.
func Expire() *redis.Script { return expire }

// All returns every script, for preloading with Load.
func All() []*redis.Script {
	return []*redis.Script{acquire, renew, release, unqueue, acquireAll, expire}
}
