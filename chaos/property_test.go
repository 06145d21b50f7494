package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/redisstore"
)

// The property test (scenario 7) drives one coordinator on a real Redis
// with random sequences of acquire, re-entry, renewal, release,
// release-all, inspection and expiry by three owners on two resources,
// and compares, after every step, the reply with a model of the lease and
// the model with what Redis holds: HGETALL and PTTL of each lease key,
// the owner index, and the partition's fence counter.
//
// Time is Redis time: each step is bracketed by the TIME of the snapshot
// before it and the TIME of the snapshot after it (one MULTI with the
// reads, so PTTL and TIME are taken at the same instant), and the model
// accepts the expiry a script computed from any instant in that bracket.
// TTLs are 10 to 60 minutes, so no lease runs out by itself during a
// sequence; the expire step makes one run out in Redis (PEXPIRE 1 ms,
// then waits for the key to be gone), as a holder that stopped renewing
// would see it.

const (
	// propMinTTL and propMaxTTL bound the TTLs of the sequences.
	propMinTTL = 10 * time.Minute
	propMaxTTL = 60 * time.Minute
	// pttlSlack is the rounding of PTTL and TIME to the millisecond.
	pttlSlack = 2
)

var (
	propOwners    = []string{"owner-a", "owner-b", "owner-c"}
	propResources = []coordinator.Resource{{Type: "prop", ID: "r0"}, {Type: "prop", ID: "r1"}}
)

// propLease is the model of one lease.
type propLease struct {
	owner    string
	count    int
	token    uint64
	acquired int64 // Redis ms
	expires  int64 // Redis ms
	// expHi is the latest the key itself may expire: the scripts set its
	// TTL with PEXPIRE expires - now, which Redis counts from when it ran
	// PEXPIRE, a little after the TIME the script read: the key outlives
	// expires_at by that gap, at most the duration of the call that set
	// it (never less than expires_at: a holder's loss deadline runs from
	// when it sent the request, so the key must not die earlier)
	expHi int64
}

// propStats counts what the property test did, over all sequences.
type propStats struct {
	sequences, steps, comparisons atomic.Int64
	// the key's expiry (PEXPIRETIME) less expires_at, ms: lowest and
	// highest seen
	mu             sync.Mutex
	diffLo, diffHi int64
	actions        [16]atomic.Int64
}

var propActionNames = []string{"acquire", "reenter", "renew", "release", "release-holder", "release-all", "expire", "inspect"}

func (s *propStats) pttlDiff(d int64) {
	s.mu.Lock()
	s.diffLo, s.diffHi = min(s.diffLo, d), max(s.diffHi, d)
	s.mu.Unlock()
}

func (s *propStats) action(name string) {
	for i, n := range propActionNames {
		if n == name {
			s.actions[i].Add(1)
		}
	}
	s.steps.Add(1)
}

// propRun is one sequence: the coordinator under test, the model, and
// the Redis time of the last snapshot.
type propRun struct {
	t      *rapid.T
	ctx    context.Context
	admin  *redis.Client
	rs     *redisstore.Store
	c      *coordinator.Coordinator
	stats  *propStats
	leases map[coordinator.Resource]*propLease
	fence  map[int]uint64 // highest token issued per partition
	now    int64          // Redis ms of the last snapshot: the lower bound of the next step
	// the step's call: when its first request was sent and its reply
	// came (the test's wall clock, the host's clock as Redis's)
	callStart, callEnd time.Time
	last               snapshot // the last snapshot
	step               int
	trail              []string // the steps so far, for the failure message
}

// TestLeaseModel is scenario 7: random sequences of lease operations by
// three owners, compared step by step with a model and with what Redis
// holds. Any difference fails the sequence, and rapid shrinks it to the
// shortest that fails.
func TestLeaseModel(t *testing.T) {
	parallel(t)
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = client.Close() })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = admin.Close() })
	stats := &propStats{diffLo: math.MaxInt64}
	start := time.Now()
	var seq atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		stats.sequences.Add(1)
		ctx := context.Background()
		// the server is the test's own: each sequence starts from nothing
		if err := admin.FlushAll(ctx).Err(); err != nil {
			rt.Fatalf("flushall: %v", err)
		}
		rs := redisstore.New(client, redisstore.WithPrefix("prop-"+strconv.FormatInt(seq.Add(1), 36)), redisstore.WithPartitions(4))
		c := coordinator.New(rs)
		rt.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(cctx)
		})
		p := &propRun{t: rt, ctx: ctx, admin: admin, rs: rs, c: c, stats: stats,
			leases: map[coordinator.Resource]*propLease{}, fence: map[int]uint64{}}
		p.snapshot() // the starting time, and an empty Redis
		rt.Repeat(map[string]func(*rapid.T){
			"acquire":        p.acquire,
			"reenter":        p.reenter,
			"renew":          p.renew,
			"release":        p.release,
			"release-holder": p.releaseHolder,
			"release-all":    p.releaseAll,
			"expire":         p.expire,
			"inspect":        p.inspect,
		})
	})
	var by []string
	for i, n := range propActionNames {
		by = append(by, fmt.Sprintf("%s %d", n, stats.actions[i].Load()))
	}
	report(t, "lease model: %d sequences, %d steps (%s), %d comparisons with the model and Redis, 0 mismatches; a lease key expires from %d to %d ms after its expires_at; %v",
		stats.sequences.Load(), stats.steps.Load(), strings.Join(by, ", "), stats.comparisons.Load(),
		stats.diffLo, stats.diffHi, time.Since(start).Round(time.Millisecond))
}

// propChecks is the number of sequences: -rapid.checks when given,
// otherwise 10,000 at full size and 200 at the short size. TestMain sets
// it.
func propChecks() int { return size(200, 10000) }

// fail stops the sequence with the steps that led to the difference.
func (p *propRun) fail(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("step %d: %s\nsteps:\n  %s", p.step, fmt.Sprintf(format, args...), strings.Join(p.trail, "\n  "))
}

// expect compares one thing and counts the comparison.
func (p *propRun) expect(ok bool, format string, args ...any) {
	p.t.Helper()
	p.stats.comparisons.Add(1)
	if !ok {
		p.fail(format, args...)
	}
}

// expHi is the latest a key may expire whose TTL the step's script set
// for expires.
func (p *propRun) expHi(expires int64) int64 {
	return expires + (ceilMS(p.callEnd) - p.callStart.UnixMilli()) + pttlSlack
}

func ceilMS(t time.Time) int64 {
	return (t.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
}

func (p *propRun) begin(name string, format string, args ...any) {
	p.step++
	p.stats.action(name)
	p.trail = append(p.trail, fmt.Sprintf("%d %s %s", p.step, name, fmt.Sprintf(format, args...)))
}

func (p *propRun) drawOwner() string {
	return rapid.SampledFrom(propOwners).Draw(p.t, "owner")
}

func (p *propRun) drawResource() coordinator.Resource {
	return propResources[rapid.IntRange(0, len(propResources)-1).Draw(p.t, "resource")]
}

func (p *propRun) drawTTL() time.Duration {
	ms := rapid.Int64Range(propMinTTL.Milliseconds(), propMaxTTL.Milliseconds()).Draw(p.t, "ttl ms")
	return time.Duration(ms) * time.Millisecond
}

// drawHeld picks a held resource, or skips the step when none is held.
func (p *propRun) drawHeld() coordinator.Resource {
	var held []coordinator.Resource
	for _, r := range propResources {
		if p.leases[r] != nil {
			held = append(held, r)
		}
	}
	if len(held) == 0 {
		p.t.Skip("nothing held")
	}
	return rapid.SampledFrom(held).Draw(p.t, "held")
}

func (p *propRun) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	p.callStart = time.Now()
	err := f(ctx)
	p.callEnd = time.Now()
	return err
}

// acquire takes r for a random owner: a free resource, a re-entry of
// the owner's lease, or a conflict with another owner's.
func (p *propRun) acquire(t *rapid.T) {
	r, o, ttl := p.drawResource(), p.drawOwner(), p.drawTTL()
	p.doAcquire("acquire", r, o, ttl)
}

// reenter re-enters a held lease by its holder.
func (p *propRun) reenter(t *rapid.T) {
	r := p.drawHeld()
	p.doAcquire("reenter", r, p.leases[r].owner, p.drawTTL())
}

func (p *propRun) doAcquire(name string, r coordinator.Resource, o string, ttl time.Duration) {
	p.begin(name, "%s by %s, TTL %v", r, o, ttl)
	t0 := p.now
	var l coordinator.Lease
	err := p.call(func(ctx context.Context) (err error) {
		l, err = p.c.Acquire(ctx, r, o, coordinator.TTL(ttl))
		return err
	})
	t1 := p.snapshotTime()
	ms := ttl.Milliseconds()
	old := p.leases[r]
	switch {
	case old == nil: // a new lease
		p.expect(err == nil, "acquire of free %s by %s: %v", r, o, err)
		part := p.rs.Layout().Partition(r)
		at := l.AcquiredAt.UnixMilli()
		p.expect(l.Owner == o && l.Count == 1 && l.Resource == r, "acquire of free %s: %+v", r, l)
		p.expect(l.Token > p.fence[part], "new token %d of %s not above %d, the partition's last", l.Token, r, p.fence[part])
		p.expect(l.Token >= uint64(t0)*1000, "new token %d of %s below Redis time %d ms", l.Token, r, t0)
		p.expect(at >= t0 && at <= t1, "acquired_at %d outside the step [%d, %d]", at, t0, t1)
		p.expect(l.ExpiresAt.UnixMilli() == at+ms, "expires_at %d, want acquired_at %d + TTL %d", l.ExpiresAt.UnixMilli(), at, ms)
		p.leases[r] = &propLease{owner: o, count: 1, token: l.Token, acquired: at, expires: at + ms, expHi: p.expHi(at + ms)}
		p.fence[part] = l.Token
	case old.owner == o: // re-entry: count + 1, same token, expiry never shortened
		p.expect(err == nil, "re-entry of %s by %s: %v", r, o, err)
		lo, hi := max(old.expires, t0+ms), max(old.expires, t1+ms)
		exp := l.ExpiresAt.UnixMilli()
		p.expect(l.Owner == o && l.Count == old.count+1 && l.Token == old.token && l.AcquiredAt.UnixMilli() == old.acquired,
			"re-entry of %s: %+v, model %+v", r, l, *old)
		p.expect(exp >= lo && exp <= hi, "re-entry expires_at %d outside [%d, %d] (was %d, TTL %d)", exp, lo, hi, old.expires, ms)
		old.count++
		old.expires, old.expHi = exp, p.expHi(exp)
	default: // another owner's lease
		ce, ok := errors.AsType[*coordinator.ConflictError](err)
		p.expect(ok, "acquire of %s held by %s, by %s: %v, want a conflict", r, old.owner, o, err)
		p.expect(ce.Holder == old.owner && ce.Token == old.token && ce.Count == old.count && ce.ExpiresAt.UnixMilli() == old.expires,
			"conflict on %s: %+v, model %+v", r, *ce, *old)
	}
	p.compare()
}

// renew renews r for a random owner.
func (p *propRun) renew(t *rapid.T) {
	r, o, ttl := p.drawResource(), p.drawOwner(), p.drawTTL()
	p.begin("renew", "%s by %s, TTL %v", r, o, ttl)
	t0 := p.now
	var l coordinator.Lease
	err := p.call(func(ctx context.Context) (err error) {
		l, err = p.c.Renew(ctx, r, o, coordinator.TTL(ttl))
		return err
	})
	t1 := p.snapshotTime()
	ms := ttl.Milliseconds()
	old := p.leases[r]
	switch {
	case old == nil:
		p.expect(errors.Is(err, coordinator.ErrExpired), "renew of free %s: %v, want ErrExpired", r, err)
	case old.owner != o:
		le, ok := errors.AsType[*coordinator.LeaseError](err)
		p.expect(ok && errors.Is(err, coordinator.ErrNotHeld) && le.Holder == old.owner,
			"renew of %s held by %s, by %s: %v, want ErrNotHeld naming the holder", r, old.owner, o, err)
	default: // the expiry is now + TTL, shorter or longer
		p.expect(err == nil, "renew of %s by its holder %s: %v", r, o, err)
		exp := l.ExpiresAt.UnixMilli()
		p.expect(l.Owner == o && l.Count == old.count && l.Token == old.token && l.AcquiredAt.UnixMilli() == old.acquired,
			"renew of %s: %+v, model %+v", r, l, *old)
		p.expect(exp >= t0+ms && exp <= t1+ms, "renewed expires_at %d outside [%d, %d]", exp, t0+ms, t1+ms)
		old.expires, old.expHi = exp, p.expHi(exp)
	}
	p.compare()
}

// release drops one hold of r by a random owner.
func (p *propRun) release(t *rapid.T) {
	p.doRelease("release", p.drawResource(), p.drawOwner())
}

// releaseHolder drops one hold of a held lease by its holder.
func (p *propRun) releaseHolder(t *rapid.T) {
	r := p.drawHeld()
	p.doRelease("release-holder", r, p.leases[r].owner)
}

func (p *propRun) doRelease(name string, r coordinator.Resource, o string) {
	p.begin(name, "%s by %s", r, o)
	var l coordinator.Lease
	err := p.call(func(ctx context.Context) (err error) {
		l, err = p.c.Release(ctx, r, o)
		return err
	})
	p.snapshotTime()
	old := p.leases[r]
	switch {
	case old == nil:
		p.expect(errors.Is(err, coordinator.ErrNotHeld), "release of free %s: %v, want ErrNotHeld", r, err)
	case old.owner != o:
		p.expect(errors.Is(err, coordinator.ErrNotHeld), "release of %s held by %s, by %s: %v, want ErrNotHeld", r, old.owner, o, err)
	default:
		p.expect(err == nil, "release of %s by its holder %s: %v", r, o, err)
		p.expect(l.Count == old.count-1 && l.Token == old.token && l.Owner == o,
			"release of %s: %+v, model %+v", r, l, *old)
		old.count--
		if old.count == 0 {
			delete(p.leases, r)
		}
	}
	p.compare()
}

// releaseAll releases every lease of a random owner.
func (p *propRun) releaseAll(t *rapid.T) {
	o := p.drawOwner()
	p.begin("release-all", "by %s", o)
	var n int
	err := p.call(func(ctx context.Context) (err error) {
		n, err = p.c.ReleaseAll(ctx, o)
		return err
	})
	p.snapshotTime()
	want := 0
	for r, l := range p.leases {
		if l.owner == o {
			want++
			delete(p.leases, r)
		}
	}
	p.expect(err == nil && n == want, "release-all by %s: %d, %v; want %d", o, n, err, want)
	p.compare()
}

// expire makes a held lease run out in Redis, as if its holder had
// stopped renewing it: the key's TTL is cut to 1 ms, and the step waits
// until the key is gone.
func (p *propRun) expire(t *rapid.T) {
	r := p.drawHeld()
	p.begin("expire", "%s (held by %s)", r, p.leases[r].owner)
	key := p.rs.Layout().LeaseKey(r)
	err := p.call(func(ctx context.Context) error {
		if err := p.admin.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
			return err
		}
		return testutil.Poll(ctx, time.Millisecond, func() error {
			n, err := p.admin.Exists(ctx, key).Result()
			switch {
			case err != nil:
				return testutil.Permanent(err)
			case n > 0:
				return testutil.ErrNotYet
			}
			return nil
		})
	})
	if err != nil {
		p.fail("expire %s: %v", r, err)
	}
	p.snapshotTime()
	delete(p.leases, r)
	p.compare()
}

// inspect reads r and compares it with the model.
func (p *propRun) inspect(t *rapid.T) {
	r := p.drawResource()
	p.begin("inspect", "%s", r)
	var l coordinator.Lease
	err := p.call(func(ctx context.Context) (err error) {
		l, err = p.c.Inspect(ctx, r)
		return err
	})
	p.snapshotTime()
	old := p.leases[r]
	if old == nil {
		p.expect(errors.Is(err, coordinator.ErrNotHeld), "inspect of free %s: %+v, %v; want ErrNotHeld", r, l, err)
	} else {
		p.expect(err == nil && l.Owner == old.owner && l.Count == old.count && l.Token == old.token &&
			l.AcquiredAt.UnixMilli() == old.acquired && l.ExpiresAt.UnixMilli() == old.expires,
			"inspect of %s: %+v, %v; model %+v", r, l, err, *old)
	}
	p.compare()
}

// snapshot is what Redis holds, read in one MULTI.
type snapshot struct {
	now int64 // Redis TIME at the start of the MULTI, ms
	end int64 // Redis TIME at its end, ms
	// the test's wall clock (the same host's clock as Redis's) before
	// the MULTI was sent and after its reply, ms: Redis's cached command
	// time, from which PTTL counts, lies between them
	sent, got int64
	hashes    map[coordinator.Resource]map[string]string
	pttl      map[coordinator.Resource]time.Duration
	expAt     map[coordinator.Resource]int64           // PEXPIRETIME, ms
	index     map[coordinator.Resource]map[string]bool // owner index membership, per owner
	fence     map[int]string
}

// snapshotTime reads the snapshot after a step and returns its time, the
// upper bound of the step.
func (p *propRun) snapshotTime() int64 {
	p.snapshot()
	return p.now
}

func (p *propRun) snapshot() {
	p.t.Helper()
	s := snapshot{hashes: map[coordinator.Resource]map[string]string{}, pttl: map[coordinator.Resource]time.Duration{},
		expAt: map[coordinator.Resource]int64{},
		index: map[coordinator.Resource]map[string]bool{}, fence: map[int]string{}}
	var (
		tm, te *redis.TimeCmd
		hashes = map[coordinator.Resource]*redis.MapStringStringCmd{}
		pttls  = map[coordinator.Resource]*redis.DurationCmd{}
		expAts = map[coordinator.Resource]*redis.DurationCmd{}
		member = map[coordinator.Resource]map[string]*redis.BoolCmd{}
		fences = map[int]*redis.StringCmd{}
	)
	sent := time.Now()
	err := func() error {
		ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		defer cancel()
		_, err := p.admin.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			tm = pipe.Time(ctx)
			for _, r := range propResources {
				part := p.rs.Layout().Partition(r)
				hashes[r] = pipe.HGetAll(ctx, p.rs.Layout().LeaseKey(r))
				pttls[r] = pipe.PTTL(ctx, p.rs.Layout().LeaseKey(r))
				expAts[r] = pipe.PExpireTime(ctx, p.rs.Layout().LeaseKey(r))
				member[r] = map[string]*redis.BoolCmd{}
				for _, o := range propOwners {
					member[r][o] = pipe.SIsMember(ctx, p.rs.Layout().OwnerKey(part, o), r.String())
				}
				if fences[part] == nil {
					fences[part] = pipe.Get(ctx, p.rs.Layout().FenceKey(part))
				}
			}
			te = pipe.Time(ctx)
			return nil
		})
		if errors.Is(err, redis.Nil) { // a fence not yet set
			err = nil
		}
		return err
	}()
	if err != nil {
		p.fail("snapshot: %v", err)
	}
	s.now, s.end = tm.Val().UnixMilli(), te.Val().UnixMilli()
	s.sent, s.got = sent.UnixMilli(), ceilMS(time.Now())
	for _, r := range propResources {
		s.hashes[r], s.pttl[r], s.expAt[r] = hashes[r].Val(), pttls[r].Val(), expAts[r].Val().Milliseconds()
		s.index[r] = map[string]bool{}
		for o, c := range member[r] {
			s.index[r][o] = c.Val()
		}
	}
	for part, c := range fences {
		s.fence[part] = c.Val()
	}
	p.expect(s.now >= p.now, "Redis time went back: %d after %d", s.now, p.now)
	p.now = s.end
	p.last = s
}

// compare compares the last snapshot with the model.
func (p *propRun) compare() {
	p.t.Helper()
	s := p.last
	for _, r := range propResources {
		h, pttl, m := s.hashes[r], s.pttl[r], p.leases[r]
		if m == nil {
			p.expect(len(h) == 0, "%s is free in the model, Redis holds %v", r, h)
			// go-redis gives -2 ns for no key
			p.expect(pttl == -2, "%s is free in the model, PTTL %v", r, pttl)
			continue
		}
		want := map[string]string{
			"owner": m.owner, "count": strconv.Itoa(m.count), "token": strconv.FormatUint(m.token, 10),
			"acquired_at": strconv.FormatInt(m.acquired, 10), "expires_at": strconv.FormatInt(m.expires, 10),
		}
		var keys []string
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		p.expect(strings.Join(keys, ",") == "acquired_at,count,expires_at,owner,req,token",
			"fields of %s in Redis: %v", r, keys)
		for k, v := range want {
			p.expect(h[k] == v, "%s: Redis holds %s=%q, the model %q (all: %v)", r, k, h[k], v, h)
		}
		ids := strings.Fields(h["req"])
		p.expect(len(ids) >= 1 && len(ids) <= 8, "%s: %d request ids remembered, want 1 to 8: %q", r, len(ids), h["req"])
		// the key expires at expires_at or a little after (see expHi);
		// PTTL counts from Redis's cached time, which lies between the
		// sending of the step's request and the snapshot's reply
		ke := s.expAt[r]
		p.expect(ke >= m.expires && ke <= m.expHi,
			"%s: the key expires at %d (PEXPIRETIME), outside [%d, %d] (expires_at %d)", r, ke, m.expires, m.expHi, m.expires)
		lo, hi := ke-s.got-pttlSlack, ke-p.callStart.UnixMilli()+pttlSlack
		got := pttl.Milliseconds()
		p.expect(got >= lo && got <= hi,
			"%s: PTTL %d ms outside [%d, %d]: the key expires at %d, the step was sent at %d, the snapshot answered at %d",
			r, got, lo, hi, ke, p.callStart.UnixMilli(), s.got)
		p.stats.pttlDiff(ke - m.expires)
		// the holder's owner index names the resource (others may keep
		// stale entries of leases that expired: ReleaseAll prunes them)
		p.expect(s.index[r][m.owner], "%s: missing from the owner index of its holder %s", r, m.owner)
	}
	for part, tok := range p.fence {
		// "<last token>/<partition count>" (the count's marker)
		last, _, _ := strings.Cut(s.fence[part], "/")
		p.expect(last == strconv.FormatUint(tok, 10), "fence of partition %d: Redis %q, the last token issued %d",
			part, s.fence[part], tok)
	}
}
