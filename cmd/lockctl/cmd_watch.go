package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/coordinator"
)

// eventView is a lease event as lockctl prints it.
type eventView struct {
	Kind       string     `json:"kind"`
	Resource   string     `json:"resource"`
	Type       string     `json:"type"`
	ID         string     `json:"id,omitempty"`
	Owner      string     `json:"owner,omitempty"`
	Token      uint64     `json:"token,omitempty,string"` // a decimal string: exact in JavaScript and jq
	Count      int        `json:"count"`
	Meta       string     `json:"meta,omitempty"`
	Time       *time.Time `json:"time,omitempty"`
	AcquiredAt *time.Time `json:"acquired_at,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	EventID    string     `json:"event_id,omitempty"` // the stream entry id
	Gap        string     `json:"gap,omitempty"`      // kind gap: why events may be missing
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func newEventView(ev coordinator.Event) eventView {
	l := ev.Lease
	return eventView{Kind: string(ev.Kind), Resource: watchTarget(l.Resource), Type: l.Resource.Type, ID: l.Resource.ID,
		Owner: l.Owner, Token: l.Token, Count: l.Count, Meta: l.Meta, Time: utcPtr(ev.Time),
		AcquiredAt: utcPtr(l.AcquiredAt), ExpiresAt: utcPtr(l.ExpiresAt), EventID: ev.ID, Gap: ev.Gap}
}

// watchTarget is r as watch names it: "type/" for a whole type.
func watchTarget(r coordinator.Resource) string {
	if r.ID == "" {
		return r.Type + "/"
	}
	return r.String()
}

// writeEvent prints ev as one JSON line or one line of text.
func writeEvent(w io.Writer, asJSON bool, ev coordinator.Event) error {
	v := newEventView(ev)
	if asJSON {
		return writeJSON(w, v)
	}
	var err error
	if ev.Kind == coordinator.EventGap {
		_, err = fmt.Fprintf(w, "gap %s: events may be missing: %s\n", v.Resource, v.Gap)
		return err
	}
	meta := ""
	if v.Meta != "" {
		meta = fmt.Sprintf(" meta=%q", v.Meta)
	}
	_, err = fmt.Fprintf(w, "%s %-11s %s owner=%q token=%d count=%d expires_at=%s%s\n",
		fmtTime(v.Time), v.Kind, v.Resource, v.Owner, v.Token, v.Count, fmtTime(v.ExpiresAt), meta)
	return err
}

func (a *app) watchCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "watch RESOURCE|TYPE/ [--json]",
		Short: "Print the lease events of a resource, or of every resource of a type",
		Long: `watch prints every change of the leases on RESOURCE (plan/42), or on every
resource of a type (plan/), from now until interrupted: one line each, one
JSON object per line with --json (tokens as decimal strings). Kinds:
acquired, reentered, renewed, decremented, released, forced, expired, and
gap: events may be missing before the next one (watch fell behind, the
stream was trimmed past what it had read, Redis lost its data); read the
current state with inspect after a gap. Times are Redis time.

watch reads the audit outbox (the partitions' event streams): with the
outbox switched off there are no events, and watch is refused (status 2).

Exit status: 0 interrupted; ` + commonExits + `.`,
		Example: `  lockctl watch plan/42
  lockctl watch plan/ --json | jq -c 'select(.kind == "expired")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseWatchTarget(args[0])
			if err != nil {
				return a.jsonFailure(asJSON, err)
			}
			return a.watch(cmd.Context(), r, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, one object per line")
	return cmd
}

// parseWatchTarget reads RESOURCE or TYPE/.
func parseWatchTarget(s string) (coordinator.Resource, error) {
	if typ, ok := strings.CutSuffix(s, "/"); ok && !strings.Contains(typ, "/") {
		if err := coordinator.ValidateType(typ); err != nil {
			return coordinator.Resource{}, err
		}
		return coordinator.Resource{Type: typ}, nil
	}
	return parseResource(s)
}

// follow connects to Redis and builds a coordinator on its store, for a
// command that follows leases until its context ends (leader --watch,
// watch); end closes the coordinator, then the connection.
func (a *app) follow(ctx context.Context) (c *coordinator.Coordinator, end func(), err error) {
	cctx, cancel := a.opContext(ctx)
	rc, err := a.connect(cctx)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	c = coordinator.New(rc.store, coordinator.WithLogger(a.log))
	return c, func() {
		_ = c.Close(context.WithoutCancel(ctx))
		_ = rc.Close()
	}, nil
}

// watch prints the events of r until ctx ends.
func (a *app) watch(ctx context.Context, r coordinator.Resource, asJSON bool) error {
	c, end, err := a.follow(ctx)
	if err != nil {
		return a.jsonFailure(asJSON, err)
	}
	defer end()
	var ch <-chan coordinator.Event
	if r.ID == "" {
		ch, err = c.WatchType(ctx, r.Type)
	} else {
		ch, err = c.Watch(ctx, r)
	}
	if err != nil {
		return a.jsonFailure(asJSON, unsupportedAsUsage(err))
	}
	for ev := range ch {
		if err := writeEvent(a.stdout, asJSON, ev); err != nil {
			return err
		}
	}
	return nil
}
