package redisstore

import (
	"context"
	"strings"
	"sync"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// A script's EVALSHA is built here in the one slice go-redis sends,
// instead of through redis.Script.Run, which copies the KEYS and ARGV
// into a slice of its own and boxes each key and the hash again: on the
// path of every acquire and release, those copies were a fifth of the
// client's allocations.

// scripter is what runs a script: a UniversalClient, or the *redis.Conn
// of WithReplicaAck.
type scripter interface {
	redis.Scripter
	Process(ctx context.Context, cmd redis.Cmder) error
}

// hashes holds each script's SHA1, boxed once.
var hashes sync.Map // *redis.Script -> any (string)

// evalArgs starts the EVALSHA of script, with room for nkeys KEYS and
// nargs ARGV to be appended, in this order.
func evalArgs(script *redis.Script, nkeys, nargs int) []any {
	h, ok := hashes.Load(script)
	if !ok {
		h, _ = hashes.LoadOrStore(script, any(script.Hash()))
	}
	args := make([]any, 3, 3+nkeys+nargs)
	args[0], args[1], args[2] = "evalsha", h, nkeys
	return args
}

// runScript sends args, an EVALSHA of script built by evalArgs. When
// Redis does not have the script (NOSCRIPT: after a SCRIPT FLUSH, a
// restart or a failover), it sends the script itself once, with EVAL on c,
// which also caches it for the next EVALSHA: as redis.Script.Run does, and
// with no more than the +evalsha +eval a worker's ACL user is granted
// (SCRIPT LOAD would need +script|load).
func runScript(ctx context.Context, c scripter, script *redis.Script, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	if err := cmd.Err(); err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return cmd
	}
	n, _ := args[2].(int)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = argString(args[3+i])
	}
	return script.Eval(ctx, c, keys, args[3+n:]...)
}

// runScript is runScript on the store's client, or with WithAutoPipeline
// on its AutoPipeliner when another script call is in flight: a call alone
// would only wait for the pipeliner's hand-off to its flusher goroutine
// and back, with no other call to share the round trip with.
func (s *Store) runScript(ctx context.Context, script *redis.Script, cmd []any) *redis.Cmd {
	if s.pipe == nil {
		return runScript(ctx, s.client, script, cmd)
	}
	defer s.pending.Add(-1)
	if s.pending.Add(1) == 1 && !s.pipeAlone {
		return runScript(ctx, s.client, script, cmd)
	}
	return runScript(ctx, s.pipe, script, cmd)
}

// resourceKeys are the keys of one call on a resource, sliced from one
// string.
type resourceKeys struct {
	lease, queue, owner, request string
}

// keysOf returns the lease and queue keys of r, the owner index of
// owner, and with requestID the request memo's key, in partition pk
// (see leaseKey, queueKey, ownerKey, requestKey): one allocation for all.
func (pk *partKeys) keysOf(r coordinator.Resource, owner, requestID string) resourceKeys {
	var b strings.Builder
	rk := len(r.Type) + 1 + len(r.ID)
	b.Grow(4*len(pk.tag) + len(sufLock) + len(sufQueue) + len(sufOwner) + len(sufRequest) + 3*rk + len(owner) + 1 + len(requestID))
	var ends [4]int
	b.WriteString(pk.tag)
	b.WriteString(sufLock)
	writeRes(&b, r)
	ends[0] = b.Len()
	b.WriteString(pk.tag)
	b.WriteString(sufQueue)
	writeRes(&b, r)
	ends[1] = b.Len()
	b.WriteString(pk.tag)
	b.WriteString(sufOwner)
	b.WriteString(owner)
	ends[2] = b.Len()
	if requestID != "" {
		b.WriteString(pk.tag)
		b.WriteString(sufRequest)
		writeRes(&b, r)
		b.WriteByte('/')
		b.WriteString(requestID)
	}
	ends[3] = b.Len()
	s := b.String()
	return resourceKeys{lease: s[:ends[0]], queue: s[ends[0]:ends[1]], owner: s[ends[1]:ends[2]], request: s[ends[2]:ends[3]]}
}

func writeRes(b *strings.Builder, r coordinator.Resource) {
	b.WriteString(r.Type)
	b.WriteByte(':')
	b.WriteString(r.ID)
}

// strArg is a string argument of a script that boxes without allocating:
// a pointer-shaped value (one pointer to a string of the call's callStrs),
// which go-redis writes through encoding.BinaryMarshaler and hooks and
// tracing print through fmt.Stringer. Boxing a string would allocate its
// header, once per argument.
type strArg struct{ p *string }

// MarshalBinary returns the string's bytes, not a copy: go-redis only
// writes them to the connection.
func (a strArg) MarshalBinary() ([]byte, error) {
	return unsafe.Slice(unsafe.StringData(*a.p), len(*a.p)), nil
}

// String returns the string.
func (a strArg) String() string { return *a.p }

// argString returns a's string: a is a string or a strArg.
func argString(a any) string {
	if sa, ok := a.(strArg); ok {
		return sa.String()
	}
	s, _ := a.(string)
	return s
}

// callStrs holds the strings of one script call that its strArgs point
// to: one allocation for all of them.
type callStrs struct {
	req  coordinator.Request
	keys resourceKeys
}
