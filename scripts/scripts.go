package scripts

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed acquire.lua
	acquireSrc string
	//go:embed renew.lua
	renewSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed unqueue.lua
	unqueueSrc string
)

// The scripts, each wrapped once. Run them with Run: EVALSHA, falling back
// to EVAL when Redis lost its script cache. Each file starts with its
// KEYS / ARGV / reply contract.
var (
	// Acquire takes a free resource or re-enters the owner's lease
	// (acquire.lua).
	Acquire = redis.NewScript(acquireSrc)
	// Renew sets the expiry of the owner's lease (renew.lua).
	Renew = redis.NewScript(renewSrc)
	// Release drops one hold, every hold, or forces a lease off
	// (release.lua).
	Release = redis.NewScript(releaseSrc)
	// Unqueue takes a waiter out of a resource's waiter queue
	// (unqueue.lua).
	Unqueue = redis.NewScript(unqueueSrc)
)

// All returns every script, for preloading with Load.
func All() []*redis.Script { return []*redis.Script{Acquire, Renew, Release, Unqueue} }
