package pgaudit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// The least-privilege setup of docs/operations.md: the Redis ACL users
// are read from the guide's text, with the test's prefix, so that the
// guide and the behaviour cannot part.

// guideACL returns the rules the guide gives the Redis user lockcoord-<who>.
func guideACL(t *testing.T, who, prefix string) []string {
	t.Helper()
	rules, err := testredis.DocumentedACL("../docs/operations.md", "lockcoord-"+who, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// mirrorRoleSQL creates the Postgres role of the mirror: it reads and
// writes the two tables and nothing else, and cannot change or delete the
// ledger.
func mirrorRoleSQL(role, database string) []string {
	return []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT CONNECT ON DATABASE " + database + " TO " + role,
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON locks TO " + role,
		"GRANT SELECT, INSERT ON lock_events TO " + role,
		"GRANT SELECT, INSERT, UPDATE ON lock_dead_letters TO " + role,
	}
}

// monitorRoleSQL creates the read-only Postgres role of a diagnostics job.
func monitorRoleSQL(role, database string) []string {
	return []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT CONNECT ON DATABASE " + database + " TO " + role,
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT ON locks, lock_events, lock_dead_letters TO " + role,
	}
}

// rolePool creates a role with the statements and returns a pool that logs
// in as it; the role is dropped when the test ends.
func rolePool(t *testing.T, pg *pgEnv, role string, sql []string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	for _, q := range sql {
		if _, err := pg.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = pg.pool.Exec(ctx, "DROP OWNED BY "+role)
		pg.AdminExec(t, "REVOKE CONNECT ON DATABASE "+pg.Name+" FROM "+role)
		pg.AdminExec(t, "DROP ROLE "+role)
	})
	cfg, err := pgxpool.ParseConfig(pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Database, cfg.ConnConfig.User = pg.Name, role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func aclClient(t *testing.T, rd *redisEnv, user string, rules []string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	args := []any{"ACL", "SETUSER", user, ">pw-" + user}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := rd.client.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", user, err)
	}
	c := redis.NewClient(&redis.Options{Addr: rd.srv.Addr, Username: user, Password: "pw-" + user})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestLeastPrivilegeSetupOfTheOperationsGuide(t *testing.T) {
	pg, rd := newDB(t), newReal(t)
	ctx := context.Background()
	prefix := rd.store.Layout().Prefix()

	role := "lockcoord_mirror_" + testutil.RandomHex(4)
	pool := rolePool(t, pg, role, mirrorRoleSQL(role, pg.Name))
	if _, err := pool.Exec(ctx, "DELETE FROM lock_events"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the mirror's role may delete ledger rows: %v", err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE x (i int)"); err == nil {
		t.Fatal("the mirror's role may create tables")
	}

	worker := redisstore.New(aclClient(t, rd, "worker", guideACL(t, "worker", prefix)), redisstore.WithPrefix(prefix), redisstore.WithPartitions(4))
	mstore := redisstore.New(aclClient(t, rd, "mirror", guideACL(t, "mirror", prefix)), redisstore.WithPrefix(prefix), redisstore.WithPartitions(4))
	if err := mstore.Client().Set(ctx, mstore.Layout().LeaseKey(coordinator.Plan("x")), "forged", 0).Err(); err == nil {
		t.Fatal("the mirror's Redis user may write a lease")
	}

	// the workers' operations, the release notifications included
	sub, err := worker.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	c := coordinator.New(worker)
	for i := range 20 {
		r := coordinator.Plan(itoa(i))
		if _, err := c.Acquire(ctx, r, "w1", coordinator.TTL(time.Second)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := c.Renew(ctx, r, "w1"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Inspect(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Release(ctx, coordinator.Plan("0"), "w1"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-sub.Released():
		if r != coordinator.Plan("0") {
			t.Fatalf("notified of %s", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no release notification")
	}
	if n, err := worker.ReleaseAll(ctx, "w1", "all-1"); err != nil || n != 19 {
		t.Fatalf("ReleaseAll = %d, %v", n, err)
	}
	if _, err := c.Acquire(ctx, coordinator.Project("long"), "w2", coordinator.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, coordinator.Project("dies"), "w2", coordinator.TTL(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}

	// the mirror's: run, drain, clean up, diagnose
	total := rd.streamLen(t)
	m := mirror(pool, &redisEnv{store: mstore}, pgaudit.WithClaimIdle(time.Millisecond))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	testutil.Eventually(t, 10*time.Second, "the mirror", func() bool {
		return pg.count(t, "SELECT count(*) FROM lock_events") == total
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	drain(t, m)
	testutil.Eventually(t, 10*time.Second, "project/dies to expire in Redis", func() bool {
		return rd.client.Exists(ctx, rd.store.Layout().LeaseKey(coordinator.Project("dies"))).Val() == 0
	})
	if removed, err := m.Cleanup(ctx); err != nil || len(removed) != 1 {
		t.Fatalf("Cleanup = %v, %v", removed, err)
	}
	r, err := m.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.LeasesHeld != 1 || r.RowsMirrored != 1 || r.MissingCount != 0 || r.StaleCount != 0 || r.Lag.Pending != 0 {
		t.Fatalf("Diagnose as the mirror's user: %+v", r)
	}

	// a diagnostics job reads, and can change nothing
	mon := "lockcoord_monitor_" + testutil.RandomHex(4)
	monPool := rolePool(t, pg, mon, monitorRoleSQL(mon, pg.Name))
	monStore := redisstore.New(aclClient(t, rd, "monitor", guideACL(t, "monitor", prefix)), redisstore.WithPrefix(prefix), redisstore.WithPartitions(4))
	dm := pgaudit.NewMirror(monPool, monStore)
	if r2, err := dm.Diagnose(ctx, pgaudit.DiagnoseOptions{MissingGrace: -1}); err != nil || r2.LeasesHeld != r.LeasesHeld ||
		r2.RowsMirrored != r.RowsMirrored || r2.Lag.Entries != r.Lag.Entries {
		t.Fatalf("Diagnose as the monitor: %+v, %v; as the mirror: %+v", r2, err, r)
	}
	if _, err := dm.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup with nothing stale only reads: %v", err)
	}
	if _, err := monPool.Exec(ctx, "DELETE FROM locks"); err == nil {
		t.Fatal("the monitor may delete rows")
	}
	if err := monStore.Client().XTrimMinID(ctx, monStore.Layout().StreamKey(0), "0-1").Err(); err == nil {
		t.Fatal("the monitor may trim streams")
	}
}
