package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseForced is the reason of a lease lost to a forced release: an
// operator took it off (Coordinator.ForceRelease, lockctl release
// --force), it did not expire. A keep-alive that finds its lease gone
// asks the store (ForceReporter) and reports a *LostError whose reason
// wraps ErrLeaseForced and names the operator, so errors.Is(err,
// ErrLeaseLost) and errors.Is(err, ErrLeaseForced) both hold.
var ErrLeaseForced = errors.New("coordinator: lease forced off")

// Forcer is an optional capability of a Store: a store that can take a
// lease off whoever holds it, recording the operator who did.
// redisstore.Store implements it; Coordinator.ForceRelease needs it.
type Forcer interface {
	// ForceReleaseBy deletes the lease on r whoever holds it, whatever
	// its count, recording a "forced" event that names the operator by,
	// and returns the lease it removed; ErrNotHeld when r is free.
	ForceReleaseBy(ctx context.Context, r Resource, by, requestID string) (Lease, error)
}

// ForceReporter is an optional capability of a Store: a store that can
// tell a lease forced off from one that expired. A keep-alive that finds
// its lease gone asks it, so that the holder learns "forced", not
// "expired". redisstore.Store implements it by reading the recent
// events of the lease's partition.
type ForceReporter interface {
	// ForcedBy reports whether the lease on r with token ended by a
	// forced release, and the operator that release named ("" if none).
	// forced is false when the store cannot tell.
	ForcedBy(ctx context.Context, r Resource, token uint64) (by string, forced bool, err error)
}

// forcedLookup bounds a keep-alive's question to the store whether its
// lost lease was forced off.
const forcedLookup = 2 * time.Second

// ForceRelease takes the lease on r off whoever holds it, whatever its
// count, and records the operator by (1-512 bytes of printable UTF-8,
// not only white space: ValidateOperator) in the store's "forced" event,
// and so in the pgaudit ledger: the operator's way out of a stuck lease.
// It returns the lease it removed, or an error matching ErrNotHeld when r
// is free. The holder's keep-alive learns of it at its next renewal and
// reports ErrLeaseForced; a holder in this coordinator learns of it at
// once. A store that is not a Forcer gives an error matching
// ErrUnsupported.
func (c *Coordinator) ForceRelease(ctx context.Context, r Resource, by string) (Lease, error) {
	if err := r.Validate(); err != nil {
		return Lease{}, err
	}
	if err := ValidateOperator(by); err != nil {
		return Lease{}, err
	}
	done, err := c.begin()
	if err != nil {
		return Lease{}, err
	}
	defer done()
	f, ok := c.store.(Forcer)
	if !ok {
		return Lease{}, fmt.Errorf("%w: force release: %T is no coordinator.Forcer", ErrUnsupported, c.store)
	}
	l, err := f.ForceReleaseBy(ctx, r, by, c.requestID())
	if err != nil {
		return Lease{}, err
	}
	c.cfg.log.Warn().Str("resource", r.String()).Str("owner", l.Owner).Uint64("token", l.Token).
		Str("by", by).Msg("lease forced off")
	// a holder of this coordinator need not wait for its next renewal
	c.mu.Lock()
	k := c.keepers[holdKey{r, l.Owner}]
	c.mu.Unlock()
	if k != nil {
		if cur, _ := k.current(); cur.Token == l.Token {
			k.lose(forcedReason(by))
		}
	}
	return l, nil
}

// forcedReason is the reason of a loss to a release forced by by.
func forcedReason(by string) error {
	if by == "" {
		return fmt.Errorf("%w by an operator who was not named", ErrLeaseForced)
	}
	return fmt.Errorf("%w by %q", ErrLeaseForced, by)
}

// explainLoss returns reason, a renewal's finding that the lease is gone
// (ErrExpired) or another's (ErrNotHeld), or ErrLeaseForced's reason
// when the store says an operator forced it off.
func (k *keeper) explainLoss(ctx context.Context, reason error) error {
	fr, ok := k.c.store.(ForceReporter)
	if !ok || !(errors.Is(reason, ErrExpired) || errors.Is(reason, ErrNotHeld)) {
		return reason
	}
	l, _ := k.current()
	ctx, cancel := context.WithTimeout(ctx, forcedLookup)
	defer cancel()
	by, forced, err := fr.ForcedBy(ctx, k.key.r, l.Token)
	if err != nil || !forced {
		return reason
	}
	return forcedReason(by)
}

// Orphan stops every keep-alive of c and closes c without releasing
// anything, as etcd's Session.Orphan: the leases taken through c stay in
// the store until their TTL runs out, or until another process takes
// them over (re-entering as their owner, or by a forced release). Use it
// in a process that hands its leases on, such as lockctl acquire, where
// Close would release them. After Orphan, c's calls return ErrClosed and
// Close returns nil. Waits end with ErrClosed; Orphan does not wait for
// calls in flight.
func (c *Coordinator) Orphan() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.closing)
	keepers := make([]*keeper, 0, len(c.keepers))
	for _, k := range c.keepers {
		keepers = append(keepers, k)
	}
	held := len(c.holds)
	c.holds = make(map[holdKey]int)
	c.mu.Unlock()
	c.hub.close()
	for _, k := range keepers {
		c.endKeeper(k)
	}
	c.bg.Wait()
	c.m.heldDelta(-float64(held))
	c.cfg.log.Info().Int("leases", held).Msg("coordinator orphaned: its leases are left to expire")
}
