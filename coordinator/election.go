package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ElectionType is the resource type of elections: the office of election
// "name" is an exclusive lease on Resource{ElectionType, name}, its
// holder the leader, its fencing token the term and its metadata (Meta)
// the leader's value.
const ElectionType = "election"

// DefaultElectionTTL is the default TTL of an election's lease: how long
// the office stays taken after its leader's process died, and so the
// longest failover (WithTTL(ElectionType, d) changes it).
const DefaultElectionTTL = 15 * time.Second

// leadWait is how long Lead campaigns without a Wait option: until its
// context ends.
const leadWait = 100 * 365 * 24 * time.Hour

// Election returns the resource of election name.
func Election(name string) Resource { return Resource{Type: ElectionType, ID: name} }

// Leader is the holder of an election's office, or its vacancy.
type Leader struct {
	Election  string
	Candidate string // the leader; "" when the office is vacant
	Value     string // what the leader proclaims (an address, a version)
	// Token is the term: the fencing token of the leader's lease, greater
	// for every new leader. A vacancy carries the token of the term that
	// ended (0 when none was seen).
	Token uint64
	// Since is the Redis time the term began (of a vacancy: the time the
	// office fell vacant, zero when it was found vacant).
	Since     time.Time
	ExpiresAt time.Time // Redis time the term ends unless renewed; zero for a vacancy
	// Gap is set by Observe on the leader it read again after events
	// were missed (a reconnection that could not resume, a slow
	// observer): terms or values between the previous Leader and this one
	// may not have been reported.
	Gap bool
}

// Vacant reports whether l is a vacancy.
func (l Leader) Vacant() bool { return l.Candidate == "" }

// leaderOf returns the lease l of election as its Leader.
func leaderOf(election string, l Lease) Leader {
	return Leader{Election: election, Candidate: l.Owner, Value: l.Meta, Token: l.Token,
		Since: l.AcquiredAt, ExpiresAt: l.ExpiresAt}
}

// Term is a leader's term, given to the function Lead runs. Its Leader is
// the leader as elected, with the Value of the last Proclaim. A Term is
// meant for the function's goroutine: it is not safe for concurrent use.
type Term struct {
	Leader
	c   *Coordinator
	req Request
}

// Proclaim changes the leader's value during its term: it re-enters the
// candidate's lease with value as the lease's metadata, so that the value
// is replaced in the same atomic step as the lease is re-entered, and
// then drops the extra hold. The term (the token) does not change;
// observers get a Leader with the same Token and the new Value.
//
// value must be non-empty (a re-entry without metadata keeps the old
// one) and follow ValidateMeta, or the error is ErrInvalid. When the term
// has ended meanwhile, nothing stays changed and the error is a
// *LostError (ErrLeaseLost).
func (t *Term) Proclaim(ctx context.Context, value string) error {
	if value == "" {
		return invalid("value", value, "must not be empty: a re-entry without metadata keeps the old value")
	}
	if err := validateValue(value); err != nil {
		return err
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	req := t.req
	req.Meta, req.RequestID, req.All = value, t.c.requestID(), false
	l, err := t.c.store.Acquire(ctx, req)
	if err != nil {
		return fmt.Errorf("coordinator: proclaim in %s: %w", req.Resource, err)
	}
	drop := req
	drop.RequestID = t.c.requestID()
	if l.Token != t.Token {
		// the office had fallen vacant and the re-entry took a new term:
		// give it back, the term of t is over
		drop.All = true
		_, rerr := t.c.store.Release(ctx, drop)
		return errors.Join(&LostError{Resource: req.Resource, Owner: req.Owner, Token: t.Token, Reason: ErrExpired}, rerr)
	}
	if _, err := t.c.store.Release(ctx, drop); err != nil {
		// the value is proclaimed; the extra hold goes with the resignation
		t.c.cfg.log.Warn().Err(err).Str("election", t.Election).Msg("proclaim: dropping the extra hold failed")
	}
	t.Value = value
	return nil
}

// validateValue checks a leader's value, as Meta checks lease metadata.
func validateValue(value string) error {
	err := ValidateMeta(value)
	if ve, ok := errors.AsType[*ValidationError](err); ok {
		return &ValidationError{Field: "value", Value: ve.Value, Rule: ve.Rule}
	}
	return err
}

// validateElection checks an election's name and candidate (a resource ID
// and an owner).
func validateElection(election, candidate string) error {
	if err := validateName("election", election); err != nil {
		return err
	}
	return validateName("candidate", candidate)
}

// Lead campaigns for election as candidate, then runs fn while candidate
// leads, and resigns when fn returns.
//
// Campaigning waits for the office, woken when it falls vacant (as Wait
// waits for a release), until ctx ends or, with a Wait option, until its
// time is up (the error matches ErrConflict then). The office is an
// exclusive lease on Election(election), with the TTL of its type
// (DefaultElectionTTL unless WithTTL or TTL say otherwise) and value as
// its metadata. While fn runs, the lease is kept alive; fn's context is
// cancelled with ErrLeaseLost (a *LostError) as soon as leadership is
// known lost, and with ErrClosed when Close starts. fn should pass
// term.Token with every write it makes as the leader, so that a resource
// can refuse a leader that was paused past its term (fencing). When fn
// returns the lease is released whatever its hold count (Close releases
// it too). Shared and Permits are ErrInvalid: an office has one holder.
//
// Lead returns the campaign's error, or fn's error joined with the
// *LostError when leadership was lost, or with the resignation's error.
func (c *Coordinator) Lead(ctx context.Context, election, candidate, value string, fn func(ctx context.Context, term *Term) error, opts ...AcquireOption) error {
	if fn == nil {
		return invalid("fn", "nil", "must not be nil")
	}
	if err := validateElection(election, candidate); err != nil {
		return err
	}
	if err := validateValue(value); err != nil {
		return err
	}
	all := append([]AcquireOption{Wait(leadWait)}, opts...)
	all = append(all, func(cc *callConfig) { cc.meta = value })
	cl, err := c.startCall(Election(election), candidate, all)
	if err != nil {
		return err
	}
	defer cl.done()
	if cl.req.Mode != ModeExclusive {
		return invalid("mode", cl.req.Mode.String(), "an election's office is exclusive: Shared and Permits do not apply")
	}
	l, err := c.acquire(ctx, cl.req, cl.cc)
	if err != nil {
		return err
	}
	t := &Term{Leader: leaderOf(election, l), c: c, req: cl.req}
	ls := []Lease{l}
	lost, ferr := c.runKept(ctx, ls, func(ctx context.Context) error { return fn(ctx, t) })
	resign := cl.req
	resign.All = true
	if err := c.endHolds(ctx, []Request{resign}, ls, lost); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// Leader reports the current leader of election; ErrNotHeld when the
// office is vacant.
func (c *Coordinator) Leader(ctx context.Context, election string) (Leader, error) {
	if err := validateName("election", election); err != nil {
		return Leader{}, err
	}
	l, err := c.Inspect(ctx, Election(election))
	if err != nil {
		return Leader{}, err
	}
	return leaderOf(election, l), nil
}
