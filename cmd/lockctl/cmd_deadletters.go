package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/pgaudit"
)

func (a *app) deadLettersCmd() *cobra.Command {
	mf := &mirrorFlags{}
	var (
		asJSON bool
		replay bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "dead-letters [--replay] [--json]",
		Short: "List or replay the stream entries the mirror could not apply",
		Long: `dead-letters lists the open dead letters of the audit mirror: stream entries
kept whole in the lock_dead_letters table instead of being applied, because
they are not lease events (malformed), because Postgres refused them (text
that is not UTF-8, an id too long for an index), or because they were
trimmed from the stream before the mirror read them (lost). Each is shown
with its partition, stream id, reason and fields (bytes that are not text
are escaped).

--replay tries every open dead letter again: it applies the entry, with its
original stream id, to the ledger and the mirror and marks it resolved, or
records why it still fails. Correct an entry first with an UPDATE of its
fields column (docs/operations.md shows how); dismiss one with an UPDATE
of resolved_at and resolution.

Exit status: 0; ` + commonExits + `.`,
		Example: `  lockctl dead-letters
  lockctl dead-letters --json | jq '.entries[].reason'
  lockctl dead-letters --replay`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pgaudit.ValidateLimit(limit); err != nil {
				return fmt.Errorf("bad --limit: %w", err)
			}
			limit = cmp.Or(limit, pgaudit.DefaultListLimit)
			return a.withMirror(cmd.Context(), "dead-letters", mf.options(a), func(m *pgaudit.Mirror, _ *redisConn, _ *pgxpool.Pool) error {
				if replay {
					return a.replayDeadLetters(cmd.Context(), m, asJSON)
				}
				return a.listDeadLetters(cmd.Context(), m, asJSON, limit)
			})
		},
	}
	mf.add(cmd)
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&replay, "replay", false, "apply the open dead letters again")
	f.IntVar(&limit, "limit", pgaudit.DefaultListLimit, "most dead letters listed (0: the default, 100; the count is exact)")
	return cmd
}

// replayDeadLetters is dead-letters --replay.
func (a *app) replayDeadLetters(ctx context.Context, m *pgaudit.Mirror, asJSON bool) error {
	res, err := m.ReplayDeadLetters(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, map[string]any{"replayed": res.Replayed, "failed": nonNil(res.Failed)})
	}
	fmt.Fprintf(a.stdout, "replayed %d dead letters; %d still fail\n", res.Replayed, len(res.Failed))
	return writeDeadLetters(a.stdout, res.Failed)
}

// listDeadLetters is dead-letters: the open ones, at most limit.
func (a *app) listDeadLetters(ctx context.Context, m *pgaudit.Mirror, asJSON bool, limit int) error {
	open, total, err := m.DeadLetters(ctx, limit)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, map[string]any{"count": total, "entries": nonNil(open)})
	}
	fmt.Fprintf(a.stdout, "%d open dead letters\n", total)
	if err := writeDeadLetters(a.stdout, open); err != nil {
		return err
	}
	if total > len(open) {
		fmt.Fprintf(a.stdout, "… and %d more (--limit)\n", total-len(open))
	}
	return nil
}

func nonNil(d []pgaudit.DeadLetter) []pgaudit.DeadLetter {
	if d == nil {
		return []pgaudit.DeadLetter{}
	}
	return d
}

// writeDeadLetters prints each dead letter as a block: where, when, why,
// and its fields quoted (bytes that are not text escaped).
func writeDeadLetters(w io.Writer, dead []pgaudit.DeadLetter) error {
	for _, d := range dead {
		fields := make([]string, 0, len(d.Fields))
		for _, f := range d.Fields {
			fields = append(fields, fmt.Sprintf("%q=%q", f.Name, f.Value))
		}
		if _, err := fmt.Fprintf(w, "\npartition %d entry %s (%s), recorded %s\n  reason: %s\n  fields: %s\n",
			d.Partition, d.StreamID, d.StreamKey, d.RecordedAt.UTC().Format(time.RFC3339Nano), oneLine(d.Reason),
			strings.Join(fields, " ")); err != nil {
			return err
		}
	}
	return nil
}
