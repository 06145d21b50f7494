package coordinator

import (
	"context"
	"errors"
	"time"
)

// Observe sends the current leader of election at once, then every change
// until ctx ends or Close starts, when the channel is closed: a new term,
// a new value (Proclaim), or a vacancy, as a Leader with an empty
// Candidate (the lease was released, forced or expired).
//
// Changes are read from the store's events (Watch; the store must be a
// Watcher, or the error wraps ErrUnsupported). Terms come in order, and
// none is skipped while the observer keeps up and the store keeps its
// events; renewals are not changes. An observer that falls behind blocks
// nothing: its events are dropped, and when it reads again it gets the
// leader as read then, with Gap set, as after any gap in the events (a
// reconnection that could not resume, the store's data lost). Terms
// between the last Leader and a Gap one may have been missed.
func (c *Coordinator) Observe(ctx context.Context, election string) (<-chan Leader, error) {
	if err := validateName("election", election); err != nil {
		return nil, err
	}
	octx, cancel := context.WithCancel(ctx)
	evs, err := c.Watch(octx, Election(election))
	if err != nil {
		cancel()
		return nil, err
	}
	cur, err := c.current(octx, election)
	if err != nil {
		cancel()
		for range evs { //nolint:revive // wait for the watch to end
		}
		return nil, err
	}
	out := make(chan Leader, 1)
	go func() {
		defer close(out)
		defer func() {
			cancel()
			for range evs { //nolint:revive // wait for the watch to end
			}
		}()
		o := observer{c: c, election: election, last: cur}
		send := func(l Leader) bool {
			select {
			case out <- l:
				return true
			case <-octx.Done():
				return false
			}
		}
		if !send(cur) {
			return
		}
		for ev := range evs {
			l, changed, err := o.next(octx, ev)
			if err != nil || changed && !send(l) {
				return
			}
		}
	}()
	return out, nil
}

// current reads the leader of election: a vacancy when there is none.
func (c *Coordinator) current(ctx context.Context, election string) (Leader, error) {
	l, err := c.Leader(ctx, election)
	if errors.Is(err, ErrNotHeld) {
		return Leader{Election: election}, nil
	}
	return l, err
}

// Backoff of an observer reading the leader again after a gap while the
// store fails.
var (
	observeRetryMin = 50 * time.Millisecond
	observeRetryMax = 2 * time.Second
)

// observer turns an election's lease events into changes of its leader.
type observer struct {
	c        *Coordinator
	election string
	last     Leader
}

// next returns the leader after ev and whether it changed. It fails only
// when ctx ends (or the coordinator closes) while it reads the leader
// after a gap.
func (o *observer) next(ctx context.Context, ev Event) (Leader, bool, error) {
	l := ev.Lease
	last := o.last
	switch ev.Kind {
	case EventGap:
		cur, err := o.reread(ctx)
		if err != nil {
			return Leader{}, false, err
		}
		cur.Gap = true
		o.last = cur
		return cur, true, nil
	case EventAcquired, EventReentered, EventRenewed:
		switch {
		case l.Token > last.Token:
			o.last = leaderOf(o.election, l)
		case l.Token == last.Token && !last.Vacant() && l.Meta != "" && l.Meta != last.Value:
			o.last.Value, o.last.ExpiresAt, o.last.Gap = l.Meta, l.ExpiresAt, false
		case l.Token == last.Token && !last.Vacant():
			o.last.ExpiresAt = l.ExpiresAt // a renewal: no change
			return o.last, false, nil
		default:
			return last, false, nil // an older term's event, from before the observer read the leader
		}
		return o.last, true, nil
	case EventReleased, EventForced, EventExpired:
		if last.Vacant() || l.Token < last.Token {
			return last, false, nil
		}
		o.last = Leader{Election: o.election, Token: l.Token, Since: ev.Time}
		return o.last, true, nil
	}
	return last, false, nil // decremented (a Proclaim's extra hold), or a kind this version does not know
}

// reread reads the leader, retrying while the store fails, until ctx
// ends or the coordinator closes.
func (o *observer) reread(ctx context.Context) (Leader, error) {
	delay := observeRetryMin
	for {
		cur, err := o.c.current(ctx, o.election)
		if err == nil {
			return cur, nil
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalid) {
			return Leader{}, err
		}
		o.c.cfg.log.Warn().Err(err).Str("election", o.election).Msg("observe: reading the leader after a gap failed, retrying")
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return Leader{}, context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, observeRetryMax)
	}
}
