package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/scripts"
)

// ErrPartitionMismatch reports a store configured with a partition count
// other than the one recorded in Redis for its prefix: two counts would map
// one resource to two keys, and so to two holders.
var ErrPartitionMismatch = errors.New("redisstore: partition count mismatch")

// ErrCorrupt reports a key of the store's layout holding what no store
// wrote: a lease hash with a field missing or not a decimal integer, a
// lease or fence key of another type, a fencing counter outside the range
// of exact tokens (a decimal integer from 0 to 2^63 - 2). The call that
// met it changed nothing. ForceRelease removes a corrupt lease key.
var ErrCorrupt = errors.New("redisstore: corrupt data")

// ErrOutbox reports an event that the partition's stream refused (a key of
// another type, its id space exhausted, Redis out of memory): no change is
// made without its event, so the call changed nothing.
var ErrOutbox = errors.New("redisstore: outbox refused the event")

// scriptError returns err, a script's failure, wrapping ErrCorrupt or
// ErrOutbox when it is the error reply of a script that refused to change
// anything (see lib.lua's fail).
func scriptError(err error) error {
	var re redis.Error
	if !errors.As(err, &re) {
		return err
	}
	msg := re.Error()
	switch {
	case strings.Contains(msg, "lockcoord: corrupt "):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case strings.Contains(msg, "lockcoord: outbox "):
		return fmt.Errorf("%w: %w", ErrOutbox, err)
	case strings.Contains(msg, "lockcoord: partitions "):
		return fmt.Errorf("%w: %w", ErrPartitionMismatch, err)
	}
	return err
}

// validate checks what a caller gives a Store, as the coordinator does
// before it calls one: the resource, the owner, the request id, with
// ttl the TTL, and the mode, cap and metadata. A Store is a public type: what it lets through ends in
// Redis keys and in the events the pgaudit mirror stores.
func validate(req coordinator.Request, ttl bool) error {
	if err := req.Resource.Validate(); err != nil {
		return err
	}
	if err := coordinator.ValidateOwner(req.Owner); err != nil {
		return err
	}
	if err := coordinator.ValidateRequestID(req.RequestID); err != nil {
		return err
	}
	if ttl {
		if err := coordinator.ValidateTTL(req.TTL); err != nil {
			return err
		}
	}
	return validateMode(req)
}

// Store is a coordinator.Store on Redis: standalone, Sentinel or Cluster,
// through go-redis's UniversalClient. It is safe for concurrent use.
//
// A go-redis hook that reads the arguments of the scripts' EVALSHA
// (cmd.Args()) sees each as a string or, to spare an allocation per
// argument, a fmt.Stringer that prints as the string (cmd.String() and
// tracing print them as strings); the first key is always a string.
type Store struct {
	client      redis.UniversalClient
	layout      Layout
	outbox      bool
	maxLen      int64
	retryWindow time.Duration
	notify      bool
	cluster     bool
	ackReplicas int           // WithReplicaAck; 0: off
	ackTimeout  time.Duration // WithReplicaAck
	cfgErr      error
	// evictionRisk: WithEvictionRisk, run whatever the maxmemory-policy
	evictionRisk bool

	// script arguments fixed by the options, formatted and boxed once
	maxLenArg any // ARGV "stream MAXLEN ~ cap": "0" with the outbox off
	retryArg  any // release.lua's memo lifetime, ms
	noteArg   any // release.lua's notification mode
	queueArg  any // acquire.lua's waiter queue lifetime, ms
	partsArg  any // acquire.lua's partition count, the fences' marker
	parts     []partKeys

	// WithAutoPipeline: the client's AutoPipeliner, and the script calls
	// in flight (see runScript)
	pipe      *redis.AutoPipeliner
	pending   atomic.Int64
	pipeAlone bool // tests: a call alone in flight takes the pipeliner too

	checkMu sync.Mutex
	checked bool

	watches watchHub // readers of the event streams (watch.go)
}

var _ coordinator.Store = (*Store)(nil)

// New returns a Store on client. See the options for the defaults.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{
		client:      client,
		layout:      Layout{prefix: DefaultPrefix, partitions: DefaultPartitions},
		outbox:      true,
		maxLen:      DefaultStreamMaxLen,
		retryWindow: DefaultRetryWindow,
		notify:      true,
	}
	_, s.cluster = client.(*redis.ClusterClient)
	if client == nil {
		s.fail(&coordinator.ValidationError{Field: "client", Value: "nil", Rule: "must not be nil"})
	}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	s.parts = s.layout.partKeys()
	s.maxLenArg = "0"
	if s.outbox {
		s.maxLenArg = strconv.FormatInt(s.maxLen, 10)
	}
	s.retryArg = strconv.FormatInt(ms(s.retryWindow), 10)
	s.queueArg = strconv.FormatInt(queueLife.Milliseconds(), 10)
	s.partsArg = strconv.Itoa(s.layout.partitions)
	s.noteArg = "0"
	if s.notify {
		s.noteArg = "1"
		if s.cluster {
			s.noteArg = "2"
		}
	}
	return s
}

// Layout returns the store's key layout: its prefix and partition count
// (the defaults where an option was invalid), and where it keeps each
// key and channel.
func (s *Store) Layout() Layout { return s.layout }

// Client returns the Redis client of the store.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Cluster reports whether the store runs on a Redis Cluster client.
func (s *Store) Cluster() bool { return s.cluster }

// ready returns the configuration error, or checks once (until it
// succeeds, and again after a data loss: recheck) that the Redis
// configuration cannot lose leases (CheckConfig, unless WithEvictionRisk)
// and that the partition count agrees with the one recorded in Redis
// (CheckPartitions).
func (s *Store) ready(ctx context.Context) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if s.checked {
		return nil
	}
	if !s.evictionRisk {
		if err := s.CheckConfig(ctx); err != nil {
			return err
		}
	}
	if err := s.checkPartitions(ctx); err != nil {
		return err
	}
	s.checked = true
	return nil
}

// recheck runs ready's checks again: a partition lost its data (its
// fence has no marker), so Redis may have restarted with another
// configuration, or lost the recorded partition count.
func (s *Store) recheck(ctx context.Context) error {
	s.checkMu.Lock()
	s.checked = false
	s.checkMu.Unlock()
	return s.ready(ctx)
}

func ms(d time.Duration) int64 {
	n := d.Milliseconds()
	if n < 1 {
		n = 1
	}
	return n
}

// Acquire implements coordinator.Store.
func (s *Store) Acquire(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	return s.acquire(ctx, req, "", coordinator.Queueing{})
}

// AcquireQueued implements coordinator.WaitQueue: Acquire, queuing waiter
// for the resource when refused (see acquire.lua).
func (s *Store) AcquireQueued(ctx context.Context, req coordinator.Request, waiter string, q coordinator.Queueing) (coordinator.Lease, error) {
	return s.acquire(ctx, req, waiter, q)
}

func (s *Store) acquire(ctx context.Context, req coordinator.Request, waiter string, q coordinator.Queueing) (coordinator.Lease, error) {
	if err := validate(req, true); err != nil {
		return coordinator.Lease{}, err
	}
	r := req.Resource
	if err := s.ready(ctx); err != nil {
		return coordinator.Lease{}, opError("acquire "+r.String(), err)
	}
	v, ackErr, err := s.evalMarkedCmd(ctx, scripts.Acquire(), s.acquireCmd(req, waiter, q), acquireKeys, acquireWrote)
	if err != nil {
		return coordinator.Lease{}, opError("acquire "+r.String(), err)
	}
	rp, err := parseReply(r, v)
	if err != nil {
		return coordinator.Lease{}, fmt.Errorf("redisstore: acquire %s: %w", r, err)
	}
	if err := rp.refusal(req); err != nil {
		return coordinator.Lease{}, err
	}
	if ackErr != nil {
		return coordinator.Lease{}, fmt.Errorf("redisstore: acquire %s: %w", r, s.unack(ctx, req, ackErr))
	}
	return rp.lease, nil
}

// acquireArgs is the number of ARGV of acquire.lua, acquireKeys of its
// KEYS, and markArg the index of its ARGV[14] in the ARGV (mark an
// unmarked fence).
const (
	acquireArgs = 17
	acquireKeys = 6
	markArg     = 13
)

// acquireCall returns the KEYS and ARGV of acquire.lua taking req, queued
// as waiter when refused.
func (s *Store) acquireCall(req coordinator.Request, waiter string, q coordinator.Queueing) ([]string, []any) {
	cmd := s.acquireCmd(req, waiter, q)
	keys := make([]string, acquireKeys)
	for i := range keys {
		keys[i] = argString(cmd[3+i])
	}
	return keys, cmd[3+acquireKeys:]
}

// acquireCmd returns the EVALSHA of acquire.lua taking req, queued as
// waiter when refused (see evalArgs).
func (s *Store) acquireCmd(req coordinator.Request, waiter string, q coordinator.Queueing) []any {
	pk := &s.parts[s.layout.Partition(req.Resource)]
	c := &callStrs{req: req, keys: pk.keysOf(req.Resource, req.Owner, "")}
	rq, r, k := &c.req, &c.req.Resource, &c.keys
	var waiterArg, stay any = "", "0"
	if w := s.waiter(waiter); w != "" {
		waiterArg = w
	}
	if q.StayQueued {
		stay = "1"
	}
	var modeArg, capArg any = "", "0"
	if req.Mode == coordinator.ModeShared {
		modeArg, capArg = "shared", strconv.Itoa(req.Permits)
	}
	return append(evalArgs(scripts.Acquire(), acquireKeys, acquireArgs),
		k.lease, pk.fenceArg, pk.eventsArg, strArg{&k.owner}, strArg{&k.queue}, pk.expiryArg,
		strArg{&rq.Owner}, ms(req.TTL), strArg{&rq.RequestID}, strArg{&r.Type}, strArg{&r.ID}, s.maxLenArg, waiterArg, stay,
		s.queueArg, strArg{&rq.Meta}, modeArg, capArg, s.partsArg, "0", s.noteArg, pk.releasedArg, "0")
}

// evalMarked runs an acquiring script on keys with args, acquire.lua's
// ARGV for each of its claims (see evalMarkedCmd).
func (s *Store) evalMarked(ctx context.Context, script *redis.Script, keys []string, wrote func(int64) bool,
	args []any) ([]any, error, error) {
	cmd := evalArgs(script, len(keys), len(args))
	for _, k := range keys {
		cmd = append(cmd, k)
	}
	return s.evalMarkedCmd(ctx, script, append(cmd, args...), len(keys), wrote)
}

// evalMarkedCmd runs cmd, the EVALSHA of an acquiring script on nkeys
// KEYS (see evalArgs). A fence counter without its marker (the partition
// lost its data, or was never used) makes the store check the
// configuration and the partition count again, then run the script once
// more, marking it.
func (s *Store) evalMarkedCmd(ctx context.Context, script *redis.Script, cmd []any, nkeys int,
	wrote func(int64) bool) ([]any, error, error) {
	v, ackErr, err := s.evalCmd(ctx, script, cmd, wrote)
	if !unmarked(err) {
		return v, ackErr, err
	}
	if err := s.recheck(ctx); err != nil {
		return nil, nil, err
	}
	for i := 3 + nkeys + markArg; i < len(cmd); i += acquireArgs {
		cmd[i] = "1"
	}
	return s.evalCmd(ctx, script, cmd, wrote)
}

// Renew implements coordinator.Store.
func (s *Store) Renew(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := validate(req, true); err != nil {
		return coordinator.Lease{}, err
	}
	r := req.Resource
	if err := s.ready(ctx); err != nil {
		return coordinator.Lease{}, opError("renew "+r.String(), err)
	}
	pk := &s.parts[s.layout.Partition(r)]
	keys := []string{leaseKey(pk.tag, r), pk.events, ownerKey(pk.tag, req.Owner), pk.expiry}
	v, ackErr, err := s.eval(ctx, scripts.Renew(), keys, renewWrote,
		req.Owner, ms(req.TTL), req.RequestID, r.Type, r.ID, s.maxLenArg, strconv.FormatUint(req.Token, 10))
	if err != nil {
		return coordinator.Lease{}, opError("renew "+r.String(), err)
	}
	rp, err := parseReply(r, v)
	st, l := rp.status, rp.lease
	switch {
	case err != nil:
		return coordinator.Lease{}, fmt.Errorf("redisstore: renew %s: %w", r, err)
	case ackErr != nil:
		return coordinator.Lease{}, fmt.Errorf("redisstore: renew %s: %w", r, ackErr)
	case st == statusFree:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: req.Owner, Err: coordinator.ErrExpired}
	case st == statusConflict:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: req.Owner, Holder: l.Owner, Err: coordinator.ErrNotHeld}
	case st == statusOtherToken:
		return coordinator.Lease{}, &coordinator.LeaseError{Op: "renew", Resource: r, Owner: req.Owner, Holder: l.Owner,
			HolderToken: l.Token, Err: coordinator.ErrNotHeld}
	}
	return l, nil
}

// Release implements coordinator.Store.
func (s *Store) Release(ctx context.Context, req coordinator.Request) (coordinator.Lease, error) {
	if err := validate(req, false); err != nil {
		return coordinator.Lease{}, err
	}
	return s.release(ctx, req, releaseMode(req))
}

// ForceRelease is ForceReleaseBy with no operator named: the "forced"
// event's by field is empty.
func (s *Store) ForceRelease(ctx context.Context, r coordinator.Resource, requestID string) (coordinator.Lease, error) {
	return s.forceRelease(ctx, r, "", requestID)
}

// ForceReleaseBy implements coordinator.Forcer: it deletes the lease on r
// whoever holds it, whatever its count, recording a "forced" event whose
// by field names the operator by: the operator's way out of a stuck
// lease. It returns the lease it removed, or ErrNotHeld when r is free. A
// corrupt lease key (see ErrCorrupt), whatever its type or contents, is
// removed too; the returned lease then has the fields that could be read,
// and the event carries them as they were. by follows the owner's rule
// (coordinator.ValidateOperator).
func (s *Store) ForceReleaseBy(ctx context.Context, r coordinator.Resource, by, requestID string) (coordinator.Lease, error) {
	if err := coordinator.ValidateOperator(by); err != nil {
		return coordinator.Lease{}, err
	}
	return s.forceRelease(ctx, r, by, requestID)
}

func (s *Store) forceRelease(ctx context.Context, r coordinator.Resource, by, requestID string) (coordinator.Lease, error) {
	if err := r.Validate(); err != nil {
		return coordinator.Lease{}, err
	}
	if err := coordinator.ValidateRequestID(requestID); err != nil {
		return coordinator.Lease{}, err
	}
	for attempt := 0; ; attempt++ {
		// the holder seen: the script removes only its lease (or a corrupt
		// key, whoever it names)
		holder := ""
		cur, err := s.inspect(ctx, r)
		switch {
		case err == nil:
			holder = cur.Owner
		case errors.Is(err, coordinator.ErrNotHeld):
			return coordinator.Lease{}, err
		case !errors.Is(err, ErrCorrupt):
			return coordinator.Lease{}, opError("force release "+r.String(), err)
		}
		req := coordinator.Request{Resource: r, Owner: holder, RequestID: requestID}
		l, _, err := s.runRelease(ctx, req, "force", "", by)
		var le *coordinator.LeaseError
		// the lease changed hands between the read and the script: read again
		if errors.As(err, &le) && le.Holder != "" && attempt < 3 {
			continue
		}
		return l, err
	}
}

func (s *Store) release(ctx context.Context, req coordinator.Request, mode string) (coordinator.Lease, error) {
	l, _, err := s.runRelease(ctx, req, mode, "", "")
	return l, err
}

// ReleaseHandOff implements coordinator.WaitQueue: Release, also
// reporting whether the lease went to the waiters of waiter (the
// releasing coordinator, first in the resource's queue), who are then
// not notified: the coordinator wakes them itself.
func (s *Store) ReleaseHandOff(ctx context.Context, req coordinator.Request, waiter string) (coordinator.Lease, bool, error) {
	if err := validate(req, false); err != nil {
		return coordinator.Lease{}, false, err
	}
	return s.runRelease(ctx, req, releaseMode(req), waiter, "")
}

// releaseMode is release.lua's mode of a coordinator's release.
func releaseMode(req coordinator.Request) string {
	if req.All {
		return "all"
	}
	return "one"
}

// releaseOp names a release in mode of r in its errors.
func releaseOp(mode string, r coordinator.Resource) string {
	if mode == "force" {
		return "force release " + r.String()
	}
	return "release " + r.String()
}

// modeArg is release.lua's mode argument, boxed without allocating for
// the modes a coordinator sends.
func modeArg(mode string) any {
	switch mode {
	case "one":
		return "one"
	case "all":
		return "all"
	}
	return mode
}

// runRelease runs release.lua in mode for waiter ("": none); by is the
// operator of a forced release.
func (s *Store) runRelease(ctx context.Context, req coordinator.Request, mode, waiter, by string) (coordinator.Lease, bool, error) {
	r := req.Resource
	if err := s.ready(ctx); err != nil {
		return coordinator.Lease{}, false, opError(releaseOp(mode, r), err)
	}
	pk := &s.parts[s.layout.Partition(r)]
	c := &callStrs{req: req, keys: pk.keysOf(r, req.Owner, req.RequestID)}
	rq, k := &c.req, &c.keys
	script := scripts.Release()
	cmd := append(evalArgs(script, 6, 11), k.lease, pk.eventsArg, strArg{&k.owner}, strArg{&k.request}, strArg{&k.queue},
		pk.expiryArg,
		strArg{&rq.Owner}, strArg{&rq.RequestID}, strArg{&rq.Resource.Type}, strArg{&rq.Resource.ID}, s.maxLenArg,
		modeArg(mode), s.retryArg, s.noteArg, pk.releasedArg, s.waiterArg(waiter), by)
	v, err := s.runScript(ctx, script, cmd).Slice()
	s.refreshOnFailure(err)
	if err != nil {
		return coordinator.Lease{}, false, opError(releaseOp(mode, r), err)
	}
	rp, err := parseReply(r, v)
	st, l := rp.status, rp.lease
	switch {
	case err != nil:
		return coordinator.Lease{}, false, fmt.Errorf("redisstore: %s: %w", releaseOp(mode, r), err)
	case st == statusFree:
		return coordinator.Lease{}, false, &coordinator.LeaseError{Op: "release", Resource: r, Owner: req.Owner, Err: coordinator.ErrNotHeld}
	case st == statusConflict:
		return coordinator.Lease{}, false, &coordinator.LeaseError{Op: "release", Resource: r, Owner: req.Owner, Holder: l.Owner, Err: coordinator.ErrNotHeld}
	}
	return l, st == statusHandedOff, nil
}

// Inspect implements coordinator.Store. A lease key that is not a hash,
// or whose fields no script wrote, gives an error wrapping ErrCorrupt.
// On a shared resource it reports the holder whose hold expires first.
// It reads the hash and its PTTL in one round trip (see Holders).
func (s *Store) Inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	if err := r.Validate(); err != nil {
		return coordinator.Lease{}, err
	}
	l, err := s.inspect(ctx, r)
	if err != nil && !errors.Is(err, coordinator.ErrNotHeld) {
		return coordinator.Lease{}, opError("inspect "+r.String(), err)
	}
	return l, err
}

// inspect is Inspect of a valid resource, its error not naming the
// operation (but for ErrNotHeld's): the holder that expires first.
func (s *Store) inspect(ctx context.Context, r coordinator.Resource) (coordinator.Lease, error) {
	ls, err := s.holders(ctx, r)
	if err != nil {
		return coordinator.Lease{}, err
	}
	return ls[0], nil
}

// ReleaseAll implements coordinator.Store. It reads the owner's lease index
// of every partition (one pipelined round trip; on Cluster go-redis sends
// each read to the node owning the partition) and releases each lease
// found, so it costs one script per lease of the owner, never a scan of
// the keyspace.
func (s *Store) ReleaseAll(ctx context.Context, owner, requestID string) (int, error) {
	if err := coordinator.ValidateOwner(owner); err != nil {
		return 0, err
	}
	if err := coordinator.ValidateRequestID(requestID); err != nil {
		return 0, err
	}
	if err := s.ready(ctx); err != nil {
		return 0, opError(fmt.Sprintf("release all of %q", owner), err)
	}
	cmds := make([]*redis.StringSliceCmd, s.layout.partitions)
	_, err := s.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range cmds {
			cmds[p] = pipe.SMembers(ctx, s.layout.OwnerKey(p, owner))
		}
		return nil
	})
	s.refreshOnFailure(err)
	if err != nil {
		return 0, opError(fmt.Sprintf("release all of %q", owner), err)
	}
	released := 0
	var errs []error
	for p, cmd := range cmds {
		for _, member := range cmd.Val() {
			if member == "" {
				continue // the index's placeholder (acquire.lua)
			}
			r, err := coordinator.ParseResource(member)
			if err != nil || s.layout.Partition(r) != p {
				// not written by this store version: drop it from the index
				s.client.SRem(ctx, s.layout.OwnerKey(p, owner), member)
				continue
			}
			// the release's request id names the member, not its place in
			// SMEMBERS: a repeated ReleaseAll (same requestID) after a
			// partial success sees fewer members in another order, and a
			// place-based id could meet another lease's release memo
			sum := sha256.Sum256([]byte(member))
			req := coordinator.Request{Resource: r, Owner: owner, RequestID: requestID + "." + hex.EncodeToString(sum[:12])}
			_, err = s.release(ctx, req, "all")
			switch {
			case err == nil:
				released++
			case !errors.Is(err, coordinator.ErrNotHeld):
				errs = append(errs, err)
			}
		}
	}
	return released, errors.Join(errs...)
}
