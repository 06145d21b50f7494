package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// defaultScanCount is the COUNT hint of each SCAN call of list.
const defaultScanCount = 500

// listHelp is the long help of list.
const listHelp = `list walks the lease keys of --prefix with SCAN (MATCH
<prefix>:{*}:lock:*, a cursor and COUNT batches, on every master of a
Cluster) and prints each lease as it goes, so memory stays bounded however
many leases there are. --type narrows the MATCH pattern; --owner filters
the holders read. A shared resource gets one row per holder, each with
its own token, count and expiry; MODE is exclusive, shared, or shared/N
for a cap of N owners. The table shows the remaining TTL of each key
(PTTL). --json prints one JSON object per line per holder (JSON Lines),
the object inspect --json prints without the raw fields: mode, permits
(when capped), holders (how many own the resource); the token is a
string.

On a failure stdout gets no table header: the table printed so far (rows
already read), or with --json the lines so far and then one line
{"error": "...", "exit_code": N}.

Exit status: 0; ` + commonExits + `.`

// listRun is one run of the list command.
type listRun struct {
	typ, owner string
	asJSON     bool
	count      int64
}

func (a *app) listCmd() *cobra.Command {
	lr := &listRun{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the leases held in Redis",
		Long:  listHelp,
		Example: `  lockctl list
  lockctl list --type plan --owner worker-3
  lockctl list --json | jq -r .resource`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runList(cmd.Context(), lr) },
	}
	f := cmd.Flags()
	f.StringVar(&lr.typ, "type", "", "only leases of this resource type")
	f.StringVar(&lr.owner, "owner", "", "only leases of this owner")
	f.BoolVar(&lr.asJSON, "json", false, "print one JSON object per line")
	f.Int64Var(&lr.count, "count", defaultScanCount, "SCAN COUNT hint: keys examined per round trip")
	return cmd
}

// check checks the flags.
func (lr *listRun) check() error {
	if lr.typ != "" {
		if err := coordinator.ValidateType(lr.typ); err != nil {
			return fmt.Errorf("bad --type: %w", err)
		}
	}
	if lr.owner != "" {
		if err := coordinator.ValidateOwner(lr.owner); err != nil {
			return fmt.Errorf("bad --owner: %w", err)
		}
	}
	if lr.count < 1 {
		return usagef("bad --count %d: must be positive", lr.count)
	}
	return nil
}

// runList prints the leases as it scans them.
func (a *app) runList(ctx context.Context, lr *listRun) error {
	if err := lr.check(); err != nil {
		return err
	}
	out := newListWriter(a.stdout, lr.asJSON)
	cctx, cancel := a.opContext(ctx)
	rc, err := a.connect(cctx)
	cancel()
	if err != nil {
		return out.fail(a, err)
	}
	defer func() { _ = rc.Close() }()
	if err := a.listLeases(ctx, rc.store, lr.typ, lr.owner, lr.count, out.row); err != nil {
		return out.fail(a, err)
	}
	return out.end()
}

// listLeases scans every node for lease keys of s and calls emit for each
// lease of owner (any owner when empty), batch by batch.
func (a *app) listLeases(ctx context.Context, s *redisstore.Store, typ, owner string, count int64, emit func(leaseView) error) error {
	pattern := s.Layout().LeaseKeyPattern(typ)
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			octx, cancel := a.opContext(ctx)
			keys, next, err := node.Scan(octx, cursor, pattern, count).Result()
			if err == nil && len(keys) > 0 {
				err = a.emitBatch(octx, s, keys, typ, owner, emit)
			}
			cancel()
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.Client().(*redis.ClusterClient); ok {
		// ForEachMaster scans the masters at once: one emit at a time
		var mu sync.Mutex
		inner := emit
		emit = func(v leaseView) error {
			mu.Lock()
			defer mu.Unlock()
			return inner(v)
		}
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	}
	return scan(ctx, s.Client())
}

// emitBatch reads the leases of one SCAN batch in one pipeline (HGETALL
// and PTTL of each key, and the Redis time) and calls emit for each
// holder: the exclusive one, or every shared one.
func (a *app) emitBatch(ctx context.Context, s *redisstore.Store, keys []string, typ, owner string, emit func(leaseView) error) error {
	type item struct {
		r    coordinator.Resource
		all  *redis.MapStringStringCmd
		pttl *redis.DurationCmd
	}
	items := make([]item, 0, len(keys))
	var now *redis.TimeCmd
	_, err := s.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			r, _, err := s.Layout().ParseLeaseKey(k)
			if err != nil || (typ != "" && r.Type != typ) {
				a.log.Debug().Str("key", k).Msg("not a lease key of this prefix and partition count, skipped")
				continue
			}
			items = append(items, item{r: r, all: p.HGetAll(ctx, k), pttl: p.PTTL(ctx, k)})
		}
		now = p.Time(ctx)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list: read leases: %w", err)
	}
	for _, it := range items {
		ls, err := redisstore.ParseHolders(it.r, it.all.Val(), it.pttl.Val(), now.Val())
		if err != nil {
			return err
		}
		for _, l := range ls { // none: released since the scan
			if owner != "" && l.Owner != owner {
				continue
			}
			v := newLeaseView(s, it.r, l).withPTTL(it.pttl.Val())
			v.Holders = len(ls)
			if err := emit(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// listWriter prints leases as they come: a table with fixed columns,
// its header with the first row (never before a failure), or one JSON
// object per line.
type listWriter struct {
	w      io.Writer
	asJSON bool
	n      int
}

func newListWriter(w io.Writer, asJSON bool) *listWriter { return &listWriter{w: w, asJSON: asJSON} }

const listRowFormat = "%-28s %-24s %-10s %17s %5s %10s  %s\n"

func (l *listWriter) header() error {
	_, err := fmt.Fprintf(l.w, listRowFormat, "RESOURCE", "OWNER", "MODE", "TOKEN", "COUNT", "EXPIRES IN", "KEY")
	return err
}

func (l *listWriter) row(v leaseView) error {
	l.n++
	if l.asJSON {
		return writeJSON(l.w, v)
	}
	if l.n == 1 {
		if err := l.header(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(l.w, listRowFormat, shorten(v.Resource, 28), shorten(v.Owner, 24), modeColumn(v),
		strconv.FormatUint(v.Token, 10), strconv.Itoa(v.Count), fmtPTTL(v.PTTLMillis), v.Key)
	return err
}

// modeColumn is the MODE of a row: exclusive, shared, or shared/N with
// a cap of N.
func modeColumn(v leaseView) string {
	if v.Permits > 0 {
		return v.Mode + "/" + strconv.Itoa(v.Permits)
	}
	return v.Mode
}

// end finishes a listing that succeeded: an empty table still gets its
// header.
func (l *listWriter) end() error {
	if !l.asJSON && l.n == 0 {
		return l.header()
	}
	return nil
}

// fail ends a listing that failed with err: with --json a last line
// {"error", "exit_code"}; it returns err with its status.
func (l *listWriter) fail(a *app, err error) error { return a.jsonFailure(l.asJSON, err) }
