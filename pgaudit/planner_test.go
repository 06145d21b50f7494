package pgaudit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// ledgerSize is the history a planner test starts from.
type ledgerSize struct {
	acquired int // acquisitions in the ledger, analysed
	released int // releases of the first of them, after the ANALYZE
	fresh    int // new acquisitions of released resources, in the streams
}

// Issue 12 item 9: with planner statistics taken before the ledger held
// any release, the mirror's upsert checked "has the lease ended" with a
// nested loop over a sequential scan of lock_events, one scan per row of
// a 16k-row batch: every attempt hit the 30 s apply timeout, for good. The
// check must be an index probe per row whatever the statistics say.
//
// The default size shows the bad plan (a failure before the fix) in a few
// seconds; LOCKCOORD_CHAOS=full runs the size: 1M acquisitions
// analysed, 99k releases, 50k new acquisitions.
func TestStaleStatisticsDoNotStallTheMirror(t *testing.T) {
	size := ledgerSize{acquired: 200_000, released: 20_000, fresh: 16_000}
	if os.Getenv("LOCKCOORD_CHAOS") == "full" {
		size = ledgerSize{acquired: 1_000_000, released: 99_000, fresh: 50_000}
	}
	pg, rd := newDB(t), newReal(t, redisstore.WithPartitions(16))
	ctx := context.Background()
	start := time.Now()
	pg.execDB(t, "ALTER TABLE lock_events SET (autovacuum_enabled = false)") // the statistics stay stale
	pg.execDB(t, `INSERT INTO lock_events (partition, stream_id, event, resource_type, resource_id, owner_id,
		token, hold_count, at, acquired_at, expires_at)
		SELECT i % 16, '1-' || i, 'acquired', 'plan', 'r' || i, 'w', i, 1, now(), now(), now() + interval '1 hour'
		FROM generate_series(1, $1::int) i`, size.acquired)
	pg.execDB(t, "ANALYZE lock_events")
	pg.execDB(t, "ANALYZE locks")
	pg.execDB(t, `INSERT INTO lock_events (partition, stream_id, event, resource_type, resource_id, owner_id,
		token, hold_count, at, acquired_at, expires_at)
		SELECT i % 16, '2-' || i, 'released', 'plan', 'r' || i, 'w', i, 0, now(), now(), now() + interval '1 hour'
		FROM generate_series(1, $1::int) i`, size.released)
	t.Logf("ledger of %d acquisitions (analysed) and %d releases written in %v", size.acquired, size.released, time.Since(start))

	// the plan of one batch of the mirror (1,000 entries from each of 16
	// partitions), with the statistics as they are
	batch := min(size.fresh, 16*pgaudit.DefaultBatchSize)
	plan := explain(t, pg, batch, false)
	if scans := seqScansOf(plan, "lock_events"); scans > 0 {
		t.Errorf("the upsert of %d rows plans %d sequential scans of lock_events:\n%s", batch, scans, planText(plan))
	}
	if os.Getenv("LOCKCOORD_CHAOS") == "full" {
		t.Logf("EXPLAIN ANALYZE of one batch:\n%s", planText(explain(t, pg, batch, true)))
	}

	// the mirror applies the new acquisitions, batch after batch
	feedAcquisitions(t, rd, size.fresh)
	m := mirror(pg.pool, rd, pgaudit.WithRetryBackoff(time.Second, time.Second)) // the default apply timeout, 30 s
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)                      // fails the test instead of stalling for ever
	defer cancel()
	start = time.Now()
	n, err := m.Drain(dctx)
	if err != nil || n != size.fresh {
		t.Fatalf("drain applied %d of %d: %v", n, size.fresh, err)
	}
	t.Logf("the mirror applied %d acquisitions in %v", n, time.Since(start))
	if rows := pg.count(t, "SELECT count(*) FROM locks"); rows != size.fresh {
		t.Fatalf("%d rows mirrored, want %d", rows, size.fresh)
	}
}

// feedAcquisitions appends n acquisitions of the resources plan/r1 ..
// plan/r<n>, with tokens above the ledger's, to their partitions' streams
// as acquire.lua writes them.
func feedAcquisitions(t *testing.T, rd *redisEnv, n int) {
	t.Helper()
	ctx := context.Background()
	for lo := 1; lo <= n; lo += 10_000 {
		_, err := rd.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+10_000, n+1); i++ {
				id := "r" + itoa(i)
				stream := rd.store.Layout().StreamKey(rd.store.Layout().Partition(coordinator.Plan(id)))
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: scriptFields(id, "w", int64(2_000_000+i))})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// explain returns the plan (EXPLAIN, or EXPLAIN ANALYZE in a transaction
// rolled back) of the mirror's upsert of n acquisitions of released
// resources.
func explain(t *testing.T, pg *pgEnv, n int, analyze bool) map[string]any {
	t.Helper()
	ctx := context.Background()
	typs, ids, owners, last := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	tokens, ms, seq := make([]int64, n), make([]int64, n), make([]int64, n)
	counts, caps := make([]int32, n), make([]int32, n)
	times := make([]time.Time, n)
	modes, metas := make([]string, n), make([]*string, n)
	for i := range n {
		modes[i] = "exclusive"
		typs[i], ids[i], owners[i], last[i] = "plan", "r"+itoa(i+1), "w", fmt.Sprintf("3-%d", i)
		tokens[i], ms[i], seq[i], counts[i], times[i] = int64(2_000_001+i), 3, int64(i), 1, time.Now()
	}
	option := "FORMAT JSON"
	if analyze {
		option = "ANALYZE, " + option
	}
	tx, err := pg.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var out []map[string]any
	if err := tx.QueryRow(ctx, "EXPLAIN ("+option+") "+pgaudit.UpsertLocksSQL, typs, ids, owners, tokens, counts,
		times, times, times, last, ms, seq, modes, caps, metas).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// seqScansOf counts the sequential scans of table in plan.
func seqScansOf(plan map[string]any, table string) int {
	n := 0
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		if node["Node Type"] == "Seq Scan" && node["Relation Name"] == table {
			n++
		}
		children, _ := node["Plans"].([]any)
		for _, c := range children {
			if m, ok := c.(map[string]any); ok {
				walk(m)
			}
		}
	}
	root, _ := plan["Plan"].(map[string]any)
	walk(root)
	return n
}

// planText prints a plan's nodes, one a line, indented.
func planText(plan map[string]any) string {
	var b strings.Builder
	var walk func(node map[string]any, depth int)
	walk = func(node map[string]any, depth int) {
		fmt.Fprintf(&b, "%s%v", strings.Repeat("  ", depth), node["Node Type"])
		for _, k := range []string{"Relation Name", "Index Name", "Plan Rows", "Actual Rows", "Actual Loops", "Actual Total Time"} {
			if v, ok := node[k]; ok {
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
		b.WriteString("\n")
		children, _ := node["Plans"].([]any)
		for _, c := range children {
			if m, ok := c.(map[string]any); ok {
				walk(m, depth+1)
			}
		}
	}
	root, _ := plan["Plan"].(map[string]any)
	walk(root, 0)
	if v, ok := plan["Execution Time"]; ok {
		fmt.Fprintf(&b, "execution time %v ms\n", v)
	}
	raw, _ := json.Marshal(plan["Planning Time"])
	if len(raw) > 0 && string(raw) != "null" {
		fmt.Fprintf(&b, "planning time %s ms\n", raw)
	}
	return b.String()
}
