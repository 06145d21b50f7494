package pgaudit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// ValidateLimit checks the limit of a list a person asks for (lockctl's
// diagnostics --limit and dead-letters --limit): 0 (DefaultListLimit) or
// more. The methods themselves also take a negative limit, no limit at
// all, which a program may want and a terminal never does.
func ValidateLimit(n int) error {
	if n < 0 {
		return &coordinator.ValidationError{Field: "limit", Value: strconv.Itoa(n),
			Rule: "must not be negative (0: the default, " + strconv.Itoa(DefaultListLimit) + ")"}
	}
	return nil
}

// Defaults of DiagnoseOptions.
const (
	DefaultHoldBudget   = time.Hour
	DefaultMissingGrace = 10 * time.Second
	DefaultListLimit    = 100
	// diagnosePage bounds the reads of Diagnose: the rows one query
	// returns, the leases one pipeline of HMGETs reads.
	diagnosePage = 1000
	// scanPage is the COUNT of the SCAN of lease keys: about 0.5 ms of
	// Redis time per call over a keyspace of 200,000 leases.
	scanPage = 500
	// rangePage is the COUNT of the XRANGE that counts undelivered
	// entries, when Redis cannot say: about 1.5 ms of Redis time per
	// page. No command of Diagnose holds Redis for more than a few
	// milliseconds, and Diagnose holds at most a page and the listed
	// leases in memory.
	rangePage = 500
)

// DiagnoseOptions tune Diagnose. The zero value means the defaults.
type DiagnoseOptions struct {
	// HoldBudget: leases held longer than this (since their acquisition,
	// by Redis time) are reported as long held. Zero means
	// DefaultHoldBudget (1 h); a negative value switches the check off.
	HoldBudget time.Duration
	// MissingGrace: a Redis lease acquired less than this before the
	// report is not counted as missing from the mirror, since its event
	// may still be on the way. Zero means DefaultMissingGrace (10 s); a
	// negative value means no grace.
	MissingGrace time.Duration
	// Limit: the most leases each list of the report holds (the counts are
	// exact). Zero means DefaultListLimit (100); negative, no limit.
	Limit int
	// VacancyBudget: elections without a leader for longer than this (by
	// the mirror: no row of their office, the last term ended before) are
	// reported as vacant. Zero means DefaultVacancyBudget (1 min); a
	// negative value switches the check off.
	VacancyBudget time.Duration
}

// Report is what Diagnose found. Render it with WriteTable or as JSON,
// and judge it with Healthy, Problems or ExitCode.
type Report struct {
	At         time.Time // Redis time of the report
	Prefix     string
	Partitions int
	Group      string
	HoldBudget time.Duration // 0 when the check is off

	LeasesHeld   int // leases in Redis
	RowsMirrored int // rows of the locks table

	// Stale leases: rows of the locks table expired by Redis time whose
	// Redis key is gone or carries another token (holders that died
	// without releasing), oldest expiry first. Cleanup removes them.
	StaleCount int
	Stale      []Row
	// Leases held in Redis without a row of the same token in the mirror
	// (acquired before the missing grace), oldest first.
	MissingCount int
	Missing      []coordinator.Lease
	// Leases held longer than HoldBudget, longest first.
	LongHeldCount int
	LongHeld      []coordinator.Lease
	// Elections without a leader for longer than VacancyBudget, the
	// longest vacant first (0 and none when the check is off).
	VacancyBudget time.Duration
	VacantCount   int
	Vacant        []Vacancy
	// Open dead letters: stream entries the mirror kept in
	// lock_dead_letters instead of applying them, oldest first.
	DeadLetterCount int
	DeadLetters     []DeadLetter

	Lag Lag // the mirror's backlog in Redis

	// Redis is the configuration of each Redis server the store writes
	// to (redisstore.Store.ServerConfigs): a maxmemory-policy that can
	// evict leases, or that cannot be read, is a problem.
	Redis []redisstore.ServerConfig
}

// Lag is the backlog of the mirror's consumer group in the streams.
type Lag struct {
	Entries     int64         // entries in the streams
	Undelivered int64         // entries the group has not read yet
	Pending     int64         // entries read, not yet acknowledged
	Oldest      time.Duration // age of the oldest entry not acknowledged (0: none)
	// the partitions with entries not acknowledged, or without the group
	Partitions []PartitionLag
}

// PartitionLag is the backlog in one partition's stream.
type PartitionLag struct {
	Partition   int
	Entries     int64
	Undelivered int64
	Pending     int64
	Oldest      time.Duration
	NoGroup     bool // the consumer group does not exist on the stream
}

// Diagnose reports on the mirror and the leases: leases held in Redis,
// rows mirrored, stale leases, Redis leases missing from the mirror, the
// mirror's lag (entries in the streams, not delivered, pending, age of
// the oldest not acknowledged), leases held longer than a budget, and the
// open dead letters. It only reads, a page at a time (see diagnosePage):
// SCAN and HMGET of the lease keys, XLEN, XINFO GROUPS, XPENDING (the
// summary) and XRANGE (small pages) of the streams, TIME, and the tables.
func (m *Mirror) Diagnose(ctx context.Context, opts DiagnoseOptions) (Report, error) {
	if m.err != nil {
		return Report{}, m.err
	}
	budget := cmp.Or(opts.HoldBudget, DefaultHoldBudget)
	limit := cmp.Or(opts.Limit, DefaultListLimit)
	r := Report{Prefix: m.layout.Prefix(), Partitions: len(m.streams), Group: m.cfg.group, HoldBudget: max(budget, 0)}
	var err error
	if r.At, err = m.redisNow(ctx); err != nil {
		return r, err
	}
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM locks`).Scan(&r.RowsMirrored); err != nil {
		return r, pgError("count locks", err)
	}
	if err := m.diagnoseStale(ctx, &r, limit); err != nil {
		return r, err
	}
	if vb := cmp.Or(opts.VacancyBudget, DefaultVacancyBudget); vb > 0 {
		r.VacancyBudget = vb
		if err := m.diagnoseVacancies(ctx, &r, r.At.Add(-vb), limit); err != nil {
			return r, err
		}
	}
	grace := max(cmp.Or(opts.MissingGrace, DefaultMissingGrace), 0)
	if err := m.diagnoseLeases(ctx, &r, grace, limit); err != nil {
		return r, err
	}
	if r.DeadLetters, r.DeadLetterCount, err = m.DeadLetters(ctx, limit); err != nil {
		return r, err
	}
	if r.Lag, err = m.lag(ctx, r.At); err != nil {
		return r, err
	}
	r.Redis, err = m.store.ServerConfigs(ctx)
	return r, err
}

// diagnoseStale counts the stale rows and lists the first limit of them.
func (m *Mirror) diagnoseStale(ctx context.Context, r *Report, limit int) error {
	return m.eachDeadPage(ctx, r.At, func(dead []Row) error {
		r.StaleCount += len(dead)
		if limit < 0 || len(r.Stale) < limit {
			r.Stale = append(r.Stale, head(dead, limit-len(r.Stale))...)
		}
		return nil
	})
}

// diagnoseLeases reads the Redis leases a page at a time and compares each
// page with the mirror: it counts the leases held, those missing from the
// mirror (acquired before the grace, still held when checked again) and
// those held longer than the budget, and lists the first limit of each.
func (m *Mirror) diagnoseLeases(ctx context.Context, r *Report, grace time.Duration, limit int) error {
	missing := newBounded(limit, byAcquired)
	longHeld := newBounded(limit, byAcquired)
	err := m.eachLeasePage(ctx, r.At, func(page []coordinator.Lease) error {
		r.LeasesHeld += len(page)
		gone, err := m.notMirrored(ctx, page, r.At.Add(-grace), r.At)
		if err != nil {
			return err
		}
		for _, l := range gone {
			missing.add(l)
		}
		for _, l := range page {
			if r.HoldBudget > 0 && r.At.Sub(l.AcquiredAt) > r.HoldBudget {
				longHeld.add(l)
			}
		}
		return nil
	})
	r.MissingCount, r.Missing = missing.count, missing.result()
	r.LongHeldCount, r.LongHeld = longHeld.count, longHeld.result()
	return err
}

func byAcquired(a, b coordinator.Lease) int {
	return cmp.Or(a.AcquiredAt.Compare(b.AcquiredAt), cmp.Compare(a.Resource.String(), b.Resource.String()))
}

// notMirrored returns the leases of page acquired by before that have no
// row of their holder and token in the mirror and still hold that token
// in Redis at now (a lease released since the scan is not missing).
func (m *Mirror) notMirrored(ctx context.Context, page []coordinator.Lease, before, now time.Time) ([]coordinator.Lease, error) {
	typs, ids := make([]string, len(page)), make([]string, len(page))
	for i, l := range page {
		typs[i], ids[i] = l.Resource.Type, l.Resource.ID
	}
	rows, _ := m.pool.Query(ctx, `SELECT l.resource_type, l.resource_id, l.owner_id, l.token FROM locks l
		JOIN unnest($1::text[], $2::text[]) AS k(resource_type, resource_id)
		ON l.resource_type = k.resource_type AND l.resource_id = k.resource_id`, typs, ids) // the error comes with the rows
	tokens := make(map[holdKey]uint64, len(page))
	var typ, id, owner string
	var token int64
	if _, err := pgx.ForEachRow(rows, []any{&typ, &id, &owner, &token}, func() error {
		tokens[holdKey{typ, id, owner}] = uint64(token)
		return nil
	}); err != nil {
		return nil, pgError("read locks", err)
	}
	var candidates []Row
	var at []int // their places in page
	for i, l := range page {
		if tok, ok := tokens[holdKey{l.Resource.Type, l.Resource.ID, l.Owner}]; (!ok || tok != l.Token) && !l.AcquiredAt.After(before) {
			candidates = append(candidates, Row{Resource: l.Resource, Owner: l.Owner, Token: l.Token})
			at = append(at, i)
		}
	}
	live, err := m.liveTokens(ctx, candidates, now)
	if err != nil {
		return nil, err
	}
	var out []coordinator.Lease
	for i := range candidates {
		if live[i] {
			out = append(out, page[at[i]])
		}
	}
	return out, nil
}

// bounded keeps the n least of the items added (all when n < 0), and
// counts them all.
type bounded[T any] struct {
	n     int
	cmp   func(a, b T) int
	items []T
	count int
}

func newBounded[T any](n int, cmp func(a, b T) int) *bounded[T] {
	return &bounded[T]{n: n, cmp: cmp}
}

func (b *bounded[T]) add(x T) {
	b.count++
	b.items = append(b.items, x)
	if b.n >= 0 && len(b.items) >= 2*b.n+diagnosePage {
		b.shrink()
	}
}

func (b *bounded[T]) shrink() {
	slices.SortFunc(b.items, b.cmp)
	b.items = slices.Clip(head(b.items, b.n))
}

func (b *bounded[T]) result() []T {
	b.shrink()
	return b.items
}

func head[T any](s []T, n int) []T {
	if n >= 0 && len(s) > n {
		return s[:n]
	}
	return s
}

// eachLeasePage calls f with every lease of the store's prefix, a page at
// a time: one SCAN (COUNT scanPage) of the lease keys (on every master of
// a Cluster), then one pipeline of HMGETs (and one of HGETALLs for the
// shared leases among them).
func (m *Mirror) eachLeasePage(ctx context.Context, now time.Time, f func([]coordinator.Lease) error) error {
	match := m.layout.LeaseKeyPattern("")
	scan := func(ctx context.Context, c redis.Cmdable) error {
		for cursor := uint64(0); ; {
			keys, next, err := c.Scan(ctx, cursor, match, scanPage).Result()
			if err != nil {
				return redisError("scan lease keys", err)
			}
			page, err := m.readLeases(ctx, keys, now)
			if err != nil {
				return err
			}
			if err := f(page); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := m.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex // one master at a time: f sees one page at a time
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	}
	return scan(ctx, m.rdb)
}

// readLeases reads the holds of keys at Redis time now: one lease per
// holder, several on a shared resource, whose holders that expired are
// not counted; keys that are not lease keys of the store, or gone since
// the scan, or hashes without an owner or a mode, are skipped. One
// pipeline of HMGETs reads the exclusive leases; a shared resource's
// hash, whose fields are named by its holders, is then read whole
// (HGETALL, six fields per holder).
func (m *Mirror) readLeases(ctx context.Context, keys []string, now time.Time) ([]coordinator.Lease, error) {
	type read struct {
		res coordinator.Resource
		key string
		cmd *redis.SliceCmd
		all *redis.MapStringStringCmd
	}
	reads := make([]read, 0, len(keys))
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			if res, _, err := m.layout.ParseLeaseKey(k); err == nil {
				reads = append(reads, read{res: res, key: k,
					cmd: p.HMGet(ctx, k, "owner", "count", "token", "acquired_at", "expires_at", "meta", "mode")})
			}
		}
		return nil
	})
	var shared []*read
	for i := range reads {
		v, err := reads[i].cmd.Result()
		if err != nil {
			return nil, redisError("read lease "+reads[i].key, err)
		}
		if v[6] != nil {
			shared = append(shared, &reads[i])
		}
	}
	if len(shared) > 0 {
		_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range shared {
				r.all = p.HGetAll(ctx, r.key)
			}
			return nil
		})
	}
	leases := make([]coordinator.Lease, 0, len(reads))
	for _, r := range reads {
		f, err := hashOf(r.cmd, r.all)
		if err != nil {
			return nil, redisError("read lease "+r.key, err)
		}
		if f["owner"] == "" && f["mode"] == "" {
			continue // gone since the scan, or not a lease
		}
		ls, err := redisstore.ParseHolders(r.res, f, 0, now)
		if err != nil {
			return nil, fmt.Errorf("pgaudit: read lease %s: %w", r.key, err)
		}
		leases = append(leases, ls...)
	}
	return leases, nil
}

// hashOf returns the fields of a lease hash: all of them when read
// whole, else those HMGET read.
func hashOf(fields *redis.SliceCmd, all *redis.MapStringStringCmd) (map[string]string, error) {
	if all != nil {
		return all.Result()
	}
	f := map[string]string{}
	for i, name := range []string{"owner", "count", "token", "acquired_at", "expires_at", "meta", "mode"} {
		if s, ok := fields.Val()[i].(string); ok {
			f[name] = s
		}
	}
	return f, nil
}
