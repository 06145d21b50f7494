package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testpg"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// auditDB creates a migrated database of the test's own, dropped when t
// ends, and returns a pool on it. Without Postgres it skips t (fails it
// under CI=true or LOCKCOORD_REQUIRE_SERVICES=1).
func auditDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := testpg.New(t).Pool(t)
	if _, err := pgaudit.Migrate(t.Context(), pool, zerolog.Nop()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool
}

// countRows runs a count(*) query.
func countRows(t testing.TB, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// streamEntries returns the number of entries in every partition stream
// of s, and in all.
func streamEntries(t testing.TB, client redis.UniversalClient, s *redisstore.Store) ([]int64, int64) {
	t.Helper()
	ctx := context.Background()
	per := make([]int64, s.Layout().Partitions())
	var total int64
	for p := range per {
		n, err := client.XLen(ctx, s.Layout().StreamKey(p)).Result()
		if err != nil {
			t.Fatalf("XLEN %s: %v", s.Layout().StreamKey(p), err)
		}
		per[p] = n
		total += n
	}
	return per, total
}

// mirrorMatchesRedis checks that the locks table holds exactly the leases
// Redis holds under s's prefix (owner, token, hold count), on every master.
func mirrorMatchesRedis(t testing.TB, client redis.UniversalClient, s *redisstore.Store, pool *pgxpool.Pool) int {
	t.Helper()
	ctx := context.Background()
	redisLeases := map[coordinator.Resource]coordinator.Lease{}
	var mu sync.Mutex // ForEachMaster calls scan on every master at once
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, s.Layout().LeaseKeyPattern(""), 1000).Iterator()
		for iter.Next(ctx) {
			r, _, err := s.Layout().ParseLeaseKey(iter.Val())
			if err != nil {
				return err
			}
			l, err := s.Inspect(ctx, r)
			if errors.Is(err, coordinator.ErrNotHeld) {
				continue // expired meanwhile
			}
			if err != nil {
				return err
			}
			mu.Lock()
			redisLeases[r] = l
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, scan)
	} else {
		err = scan(ctx, client.(*redis.Client))
	}
	if err != nil {
		t.Fatalf("scan leases: %v", err)
	}
	rows, err := pool.Query(ctx, `SELECT resource_type, resource_id, owner_id, token, hold_count FROM locks`)
	if err != nil {
		t.Fatal(err)
	}
	mirrored := map[coordinator.Resource]string{}
	for rows.Next() {
		var r coordinator.Resource
		var owner string
		var token int64
		var count int
		if err := rows.Scan(&r.Type, &r.ID, &owner, &token, &count); err != nil {
			t.Fatal(err)
		}
		mirrored[r] = fmt.Sprint(owner, "/", token, "/", count)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for r, l := range redisLeases {
		if want := fmt.Sprint(l.Owner, "/", l.Token, "/", l.Count); mirrored[r] != want {
			t.Errorf("%s: mirror has %q, Redis %q", r, mirrored[r], want)
		}
	}
	for r, got := range mirrored {
		if _, ok := redisLeases[r]; !ok {
			t.Errorf("%s: mirror has %q, Redis nothing", r, got)
		}
	}
	return len(redisLeases)
}

// auditFollower is the audit mirror running (Run) during a fault test.
type auditFollower struct {
	m      *pgaudit.Mirror
	pool   *pgxpool.Pool
	cancel context.CancelFunc
	done   chan error
}

// followAudit starts the mirror of s on a database of the test's own; it
// retries fast and reclaims entries left pending for a second, so that a
// failover costs it little.
func followAudit(t testing.TB, s *redisstore.Store) *auditFollower {
	t.Helper()
	a := &auditFollower{pool: auditDB(t), done: make(chan error, 1)}
	a.m = pgaudit.NewMirror(a.pool, s, pgaudit.WithBlock(50*time.Millisecond), pgaudit.WithClaimIdle(time.Second),
		pgaudit.WithRetryBackoff(10*time.Millisecond, 200*time.Millisecond), pgaudit.WithTrimInterval(-1),
		pgaudit.WithCleanupInterval(-1))
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.done <- a.m.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *auditFollower) stop() {
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
		<-a.done
	}
}

// rowsAndLedger describes every row of the mirror's locks table, each
// with the ledger's events of its resource (at most 12, the latest), for
// a test that finds rows Redis does not hold.
func (a *auditFollower) rowsAndLedger(t testing.TB) []string {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	rows, err := a.pool.Query(ctx, `SELECT resource_type, resource_id, owner_id, token, last_event_id FROM locks ORDER BY 1, 2, 3`)
	if err != nil {
		return []string{"rows: " + err.Error()}
	}
	type row struct {
		typ, id, owner, last string
		token                int64
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.typ, &r.id, &r.owner, &r.token, &r.last); err != nil {
			rows.Close()
			return []string{"rows: " + err.Error()}
		}
		rs = append(rs, r)
	}
	rows.Close()
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("row %s/%s owner %s token %d last event %s; ledger:", r.typ, r.id, r.owner, r.token, r.last))
		evs, err := a.pool.Query(ctx, `SELECT * FROM (SELECT partition, stream_id, event, owner_id, token, hold_count FROM lock_events
			WHERE resource_type = $1 AND resource_id = $2 ORDER BY at DESC, stream_id DESC LIMIT 12) e ORDER BY 2`, r.typ, r.id)
		if err != nil {
			out = append(out, "  "+err.Error())
			continue
		}
		for evs.Next() {
			var part, count int
			var sid, ev, owner string
			var token int64
			if err := evs.Scan(&part, &sid, &ev, &owner, &token, &count); err != nil {
				out = append(out, "  "+err.Error())
				break
			}
			out = append(out, fmt.Sprintf("  %d/%s %s %s token %d count %d", part, sid, ev, owner, token, count))
		}
		evs.Close()
	}
	return out
}

// catchUp waits until the mirror has applied every entry of the streams
// (none undelivered, none pending), stops it, and returns how long after
// from that was and the diagnostics of the stopped mirror.
func (a *auditFollower) catchUp(t testing.TB, from time.Time) (time.Duration, pgaudit.Report) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var rep pgaudit.Report
	err := testutil.Poll(ctx, 20*time.Millisecond, func() (err error) {
		select {
		case err := <-a.done:
			a.cancel() // the mirror ended: nothing for stop to wait for
			a.cancel = nil
			return testutil.Permanent(fmt.Errorf("the mirror stopped: %w", err))
		default:
		}
		rep, err = a.m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1})
		if err == nil && (rep.Lag.Undelivered > 0 || rep.Lag.Pending > 0) {
			err = testutil.ErrNotYet
		}
		return err
	})
	if err != nil {
		t.Fatalf("the mirror did not catch up: %+v, %v", rep.Lag, err)
	}
	took := time.Since(from)
	a.stop()
	// the report that found no lag may have counted the rows before the
	// last batch committed (it reads the rows, then the streams, and the
	// batch committed and was acknowledged in between): read them again
	// now that the mirror is stopped and nothing changes
	rep, err = a.m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1})
	if err != nil {
		t.Fatalf("diagnostics after the mirror caught up: %v", err)
	}
	return took, rep
}
