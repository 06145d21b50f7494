package pgaudit_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// pgEnv is a database of the test's own (internal/testpg), migrated, and
// dropped when the test ends.
type pgEnv struct {
	*testpg.DB
	pool *pgxpool.Pool // the test's own connections (checks)
}

func newDB(t testing.TB) *pgEnv {
	t.Helper()
	e := &pgEnv{DB: testpg.New(t)}
	e.pool = e.newPool(t, "lockcoord-test")
	if _, err := pgaudit.Migrate(context.Background(), e.pool, zerolog.Nop()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return e
}

// newPool returns a pool on the test database whose connections carry
// application name app, closed when the test ends.
func (e *pgEnv) newPool(t testing.TB, app string) *pgxpool.Pool {
	t.Helper()
	return e.Pool(t, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["application_name"] = app
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
		cfg.MaxConns = 4
	})
}

// count returns the result of a count query on the test database.
func (e *pgEnv) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// redisEnv is a Redis (miniredis unless real) with a store on it.
type redisEnv struct {
	mr     *miniredis.Miniredis // nil on a real Redis
	srv    *testredis.Server    // nil on miniredis
	client redis.UniversalClient
	store  *redisstore.Store
	now    time.Time // miniredis clock
	seq    int
}

func newMini(t testing.TB, opts ...redisstore.Option) *redisEnv {
	t.Helper()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	e := &redisEnv{mr: mr, client: c, now: time.Now().Truncate(time.Millisecond)}
	mr.SetTime(e.now)
	e.store = redisstore.New(c, append([]redisstore.Option{redisstore.WithPartitions(4)}, opts...)...)
	return e
}

func newReal(t testing.TB, opts ...redisstore.Option) *redisEnv {
	t.Helper()
	srv := testredis.Start(t)
	c := srv.Client(t)
	e := &redisEnv{client: c, srv: srv}
	e.store = redisstore.New(c, append([]redisstore.Option{redisstore.WithPartitions(4),
		redisstore.WithPrefix("lctest-" + testutil.RandomHex(4))}, opts...)...)
	return e
}

// advance moves the miniredis clock (TIME, stream ids, idle times) and its
// TTLs forward by d.
func (e *redisEnv) advance(d time.Duration) {
	e.now = e.now.Add(d)
	e.mr.SetTime(e.now)
	e.mr.FastForward(d)
}

// tick moves only the miniredis clock, not its TTLs: entries become idle,
// leases keep their keys.
func (e *redisEnv) tick(d time.Duration) {
	e.now = e.now.Add(d)
	e.mr.SetTime(e.now)
}

func (e *redisEnv) req(r coordinator.Resource, owner string, ttl time.Duration) coordinator.Request {
	e.seq++
	return coordinator.Request{Resource: r, Owner: owner, TTL: ttl, RequestID: "req-" + strconv.Itoa(e.seq)}
}

func (e *redisEnv) acquire(t testing.TB, r coordinator.Resource, owner string, ttl time.Duration) (coordinator.Lease, error) {
	t.Helper()
	return e.store.Acquire(context.Background(), e.req(r, owner, ttl))
}

func (e *redisEnv) mustAcquire(t testing.TB, r coordinator.Resource, owner string, ttl time.Duration) coordinator.Lease {
	t.Helper()
	l, err := e.acquire(t, r, owner, ttl)
	if err != nil {
		t.Fatalf("acquire %s by %s: %v", r, owner, err)
	}
	return l
}

func (e *redisEnv) renew(t testing.TB, r coordinator.Resource, owner string, ttl time.Duration) error {
	t.Helper()
	_, err := e.store.Renew(context.Background(), e.req(r, owner, ttl))
	return err
}

func (e *redisEnv) release(t testing.TB, r coordinator.Resource, owner string, all bool) error {
	t.Helper()
	q := e.req(r, owner, 0)
	q.All = all
	_, err := e.store.Release(context.Background(), q)
	return err
}

// entry is a stream entry as the scripts wrote it.
type entry struct {
	partition int
	id        string
	fields    map[string]string
}

// entries reads every entry of every partition stream.
func (e *redisEnv) entries(t testing.TB) []entry {
	t.Helper()
	var out []entry
	for p := range e.store.Layout().Partitions() {
		msgs, err := e.client.XRange(context.Background(), e.store.Layout().StreamKey(p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			f := map[string]string{}
			for k, v := range m.Values {
				f[k] = v.(string)
			}
			out = append(out, entry{p, m.ID, f})
		}
	}
	return out
}

func (e *redisEnv) streamLen(t testing.TB) int {
	t.Helper()
	n := 0
	for p := range e.store.Layout().Partitions() {
		l, err := e.client.XLen(context.Background(), e.store.Layout().StreamKey(p)).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += int(l)
	}
	return n
}

// lease is a lease's fields, in Redis or in the mirror.
type lease struct {
	Resource   string
	Owner      string
	Token      uint64
	Count      int
	AcquiredAt int64
	ExpiresAt  int64
}

func (l lease) String() string {
	return fmt.Sprintf("%s owner=%s token=%d count=%d acquired=%d expires=%d",
		l.Resource, l.Owner, l.Token, l.Count, l.AcquiredAt, l.ExpiresAt)
}

// redisLeases reads every lease key of the store's prefix.
func (e *redisEnv) redisLeases(t testing.TB) []lease {
	t.Helper()
	ctx := context.Background()
	var out []lease
	iter := e.client.Scan(ctx, 0, e.store.Layout().LeaseKeyPattern(""), 1000).Iterator()
	for iter.Next(ctx) {
		r, _, err := e.store.Layout().ParseLeaseKey(iter.Val())
		if err != nil {
			continue
		}
		h, err := e.client.HGetAll(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		now, err := e.client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		holds, err := redisstore.ParseHolders(r, h, 0, now)
		if err != nil {
			t.Fatalf("%s: %v", iter.Val(), err)
		}
		for _, l := range holds {
			out = append(out, lease{r.String(), l.Owner, l.Token, l.Count, l.AcquiredAt.UnixMilli(), l.ExpiresAt.UnixMilli()})
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, byHolder)
	return out
}

// byHolder orders leases by resource, then owner.
func byHolder(a, b lease) int {
	return cmp.Or(strings.Compare(a.Resource, b.Resource), strings.Compare(a.Owner, b.Owner))
}

// mirrorRows reads the locks table.
func (e *pgEnv) mirrorRows(t testing.TB) []lease {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT resource_type || '/' || resource_id, owner_id, token,
		hold_count, (extract(epoch from acquired_at) * 1000)::bigint, (extract(epoch from expires_at) * 1000)::bigint
		FROM locks ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (lease, error) {
		var l lease
		var tok int64
		err := r.Scan(&l.Resource, &l.Owner, &tok, &l.Count, &l.AcquiredAt, &l.ExpiresAt)
		l.Token = uint64(tok)
		return l, err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, byHolder)
	return out
}

// sameLeases fails t unless the mirror holds exactly the Redis leases.
func sameLeases(t testing.TB, rd *redisEnv, pg *pgEnv) {
	t.Helper()
	want, got := rd.redisLeases(t), pg.mirrorRows(t)
	if slices.Equal(want, got) {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mirror differs from Redis (%d leases, %d rows)\n", len(want), len(got))
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "  redis only:  %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "  mirror only: %s\n", l)
		}
	}
	t.Fatal(b.String())
}

// ledgerMatches fails t unless the ledger holds exactly one row per stream
// entry, with the entry's fields.
func ledgerMatches(t testing.TB, pg *pgEnv, want []entry) {
	t.Helper()
	rows, err := pg.pool.Query(context.Background(), `SELECT partition, stream_id, event, resource_type, resource_id,
		owner_id, token, hold_count, (extract(epoch from at) * 1000)::bigint,
		(extract(epoch from acquired_at) * 1000)::bigint, (extract(epoch from expires_at) * 1000)::bigint, request_id,
		coalesce(forced_by, '') FROM lock_events WHERE event <> 'expired'`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var p, count int
		var id, ev, typ, rid, owner, req, by string
		var token, at, acq, exp int64
		if err := r.Scan(&p, &id, &ev, &typ, &rid, &owner, &token, &count, &at, &acq, &exp, &req, &by); err != nil {
			return struct{}{}, err
		}
		key := strconv.Itoa(p) + "/" + id
		if _, dup := got[key]; dup {
			t.Errorf("ledger holds %s twice", key)
		}
		got[key] = map[string]string{"event": ev, "type": typ, "id": rid, "owner": owner,
			"token": strconv.FormatInt(token, 10), "count": strconv.Itoa(count), "at": strconv.FormatInt(at, 10),
			"acquired_at": strconv.FormatInt(acq, 10), "expires_at": strconv.FormatInt(exp, 10), "req": req}
		if ev == "forced" { // the operator, "" when none was named
			got[key]["by"] = by
		}
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("ledger has %d stream events, the streams %d", len(got), len(want))
	}
	bad := 0
	for _, e := range want {
		g, ok := got[strconv.Itoa(e.partition)+"/"+e.id]
		switch {
		case !ok:
			t.Errorf("entry %d/%s (%v) missing from the ledger", e.partition, e.id, e.fields)
			bad++
		case fmt.Sprint(g) != fmt.Sprint(e.fields):
			t.Errorf("entry %d/%s: ledger %v, stream %v", e.partition, e.id, g, e.fields)
			bad++
		}
		if bad > 10 {
			t.FailNow()
		}
	}
}

// mirror returns a mirror with test-sized timings.
func mirror(pool *pgxpool.Pool, rd *redisEnv, opts ...pgaudit.MirrorOption) *pgaudit.Mirror {
	base := []pgaudit.MirrorOption{pgaudit.WithBlock(20 * time.Millisecond),
		pgaudit.WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond), pgaudit.WithDrainTimeout(2 * time.Second)}
	return pgaudit.NewMirror(pool, rd.store, append(base, opts...)...)
}

func drain(t testing.TB, m *pgaudit.Mirror) int {
	t.Helper()
	n, err := m.Drain(context.Background())
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }
