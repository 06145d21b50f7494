package redisstore

import (
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Layout is where a Store of a prefix and a partition count keeps its
// data in Redis: it answers every key, channel and partition question
// (docs/redis-keys.md shows the layout). Every key of a partition starts
// with the partition's hash tag, <prefix>:{<p>}, so one script's keys
// share a Cluster slot and a user-supplied id never decides the slot.
//
// Build a Layout with NewLayout, or take a Store's (Store.Layout). It is
// a small immutable value, safe to copy and to share; the zero Layout has
// no partition and must not be used.
type Layout struct {
	prefix     string
	partitions int
}

// Key and channel suffixes after a partition's tag <prefix>:{<p>}, and
// after the prefix for the config key: the only place they are spelled.
const (
	sufLock     = ":lock:"      // + <type>:<id>
	sufQueue    = ":waiters:"   // + <type>:<id>
	sufFence    = ":fence"      //
	sufEvents   = ":events"     //
	sufExpiry   = ":expiry"     //
	sufOwner    = ":owner:"     // + <owner>
	sufRequest  = ":req:"       // + <type>:<id>/<request id>
	sufAllReq   = ":reqall:"    // + <request id>
	sufReleased = ":released"   // + [:<waiter>]
	sufConfig   = ":partitions" // after the prefix alone
)

// NewLayout returns the layout of prefix and a partition count, or a
// *coordinator.ValidationError (errors.Is ErrInvalid) naming the field
// and its rule: prefix is 1-64 characters of [A-Za-z0-9_.:-] (never the
// braces of a hash tag), partitions from 1 to MaxPartitions.
func NewLayout(prefix string, partitions int) (Layout, error) {
	if err := checkPrefix("prefix", prefix); err != nil {
		return Layout{}, err
	}
	if err := checkPartitions("partitions", partitions); err != nil {
		return Layout{}, err
	}
	return Layout{prefix: prefix, partitions: partitions}, nil
}

// checkPrefix is the rule of a key prefix; field names it in the error.
func checkPrefix(field, p string) error {
	bad := p == "" || len(p) > 64
	for i := 0; i < len(p) && !bad; i++ {
		c := p[i]
		bad = !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-')
	}
	if bad {
		return &coordinator.ValidationError{Field: field, Value: p, Rule: "must be 1-64 characters of [A-Za-z0-9_.:-]"}
	}
	return nil
}

// checkPartitions is the rule of a partition count; field names it in
// the error.
func checkPartitions(field string, n int) error {
	if n < 1 || n > MaxPartitions {
		return &coordinator.ValidationError{Field: field, Value: strconv.Itoa(n),
			Rule: fmt.Sprintf("must be from 1 to %d", MaxPartitions)}
	}
	return nil
}

// Prefix returns the key prefix.
func (l Layout) Prefix() string { return l.prefix }

// Partitions returns the partition count.
func (l Layout) Partitions() int { return l.partitions }

// Partition returns the partition of r: crc32(type + "/" + id) mod the
// partition count.
func (l Layout) Partition(r coordinator.Resource) int {
	h := crcString(crcString(crcString(0, r.Type), "/"), r.ID)
	return int(h % uint32(l.partitions))
}

// crcString is crc32.Update(crc, crc32.IEEETable, []byte(s)) without the
// copy of s, which escapes (and so allocates) through crc32's dispatch.
func crcString(crc uint32, s string) uint32 {
	crc = ^crc
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// tag returns "<prefix>:{p}", the start of every key of partition p.
func (l Layout) tag(p int) string {
	return l.prefix + ":{" + strconv.Itoa(p) + "}"
}

// LeaseKey returns the key of the lease hash of r:
// <prefix>:{<partition>}:lock:<type>:<id>.
func (l Layout) LeaseKey(r coordinator.Resource) string {
	return leaseKey(l.tag(l.Partition(r)), r)
}

// QueueKey returns the key of the queue of coordinators waiting for r:
// <prefix>:{<partition>}:waiters:<type>:<id>.
func (l Layout) QueueKey(r coordinator.Resource) string {
	return queueKey(l.tag(l.Partition(r)), r)
}

// FenceKey returns the key of partition p's fencing counter:
// <prefix>:{<p>}:fence.
func (l Layout) FenceKey(p int) string { return l.tag(p) + sufFence }

// StreamKey returns the key of partition p's event stream, the audit
// outbox: <prefix>:{<p>}:events.
func (l Layout) StreamKey(p int) string { return l.tag(p) + sufEvents }

// ExpiryKey returns the key of partition p's expiry index, a sorted set
// of the holds by expiry that expire.lua turns into "expired" events:
// <prefix>:{<p>}:expiry.
func (l Layout) ExpiryKey(p int) string { return l.tag(p) + sufExpiry }

// OwnerKey returns the key of owner's lease index in partition p:
// <prefix>:{<p>}:owner:<owner>.
func (l Layout) OwnerKey(p int, owner string) string { return ownerKey(l.tag(p), owner) }

// RequestKey returns the key of the memo of a release of r, with request
// id requestID, that deleted r's lease:
// <prefix>:{<partition>}:req:<type>:<id>/<request id>. The memo is the
// resource's, so that it answers only a retry of the same release of the
// same resource; a request id holds no '/', so the key's last '/' ends the
// resource.
func (l Layout) RequestKey(r coordinator.Resource, requestID string) string {
	return requestKey(l.tag(l.Partition(r)), r, requestID)
}

// AllRequestKey returns the key recording the attempt of an AcquireAll
// whose first resource (in the order the store takes them) is in
// partition p: <prefix>:{<p>}:reqall:<request id>.
func (l Layout) AllRequestKey(p int, requestID string) string {
	return l.tag(p) + sufAllReq + requestID
}

// ReleaseChannel returns partition p's release notification channel:
// <prefix>:{<p>}:released.
func (l Layout) ReleaseChannel(p int) string { return l.tag(p) + sufReleased }

// WaiterChannel returns the channel of partition p's release
// notifications addressed to one waiting coordinator:
// <prefix>:{<p>}:released:<waiter>.
func (l Layout) WaiterChannel(p int, waiter string) string {
	return l.ReleaseChannel(p) + ":" + waiter
}

// ConfigKey returns the key recording the partition count of the prefix:
// <prefix>:partitions.
func (l Layout) ConfigKey() string { return l.prefix + sufConfig }

// KeyPattern returns the SCAN MATCH pattern (and ACL pattern) of every
// key and channel of the prefix, <prefix>:*. It also matches those of a
// longer prefix that starts with <prefix>:, so such prefixes should not
// share a Redis.
func (l Layout) KeyPattern() string { return l.prefix + ":*" }

// LeaseKeyPattern returns the SCAN MATCH pattern of the lease keys of
// resourceType, or of every lease key when resourceType is "". A key it
// matches is a lease key if ParseLeaseKey accepts it.
func (l Layout) LeaseKeyPattern(resourceType string) string {
	if resourceType == "" {
		return l.prefix + ":{*}" + sufLock + "*"
	}
	return l.prefix + ":{*}" + sufLock + resourceType + ":*"
}

// ParseLeaseKey returns the resource of a lease key of the layout, and
// its partition; a key of another form, prefix or partition count gives
// a *coordinator.ValidationError.
func (l Layout) ParseLeaseKey(key string) (coordinator.Resource, int, error) {
	rest, ok := strings.CutPrefix(key, l.prefix+":{")
	bad := func(why string) (coordinator.Resource, int, error) {
		return coordinator.Resource{}, 0, &coordinator.ValidationError{Field: "lease key", Value: key, Rule: why}
	}
	if !ok {
		return bad("must start with " + l.prefix + ":{")
	}
	ps, rest, ok := strings.Cut(rest, "}"+sufLock)
	if !ok {
		return bad("must have the form <prefix>:{<partition>}:lock:<type>:<id>")
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p >= l.partitions || strconv.Itoa(p) != ps {
		return bad(fmt.Sprintf("partition must be an integer from 0 to %d", l.partitions-1))
	}
	typ, id, _ := strings.Cut(rest, ":")
	r := coordinator.Resource{Type: typ, ID: id}
	if err := r.Validate(); err != nil {
		return coordinator.Resource{}, 0, err
	}
	if got := l.Partition(r); got != p {
		return bad(fmt.Sprintf("resource %s belongs to partition %d", r, got))
	}
	return r, p, nil
}

// The keys that name a resource, an owner or a request, given the tag of
// their partition: the scripts' hot path builds only these (partKeys
// holds the rest).
func leaseKey(tag string, r coordinator.Resource) string {
	return tag + sufLock + r.Type + ":" + r.ID
}

func queueKey(tag string, r coordinator.Resource) string {
	return tag + sufQueue + r.Type + ":" + r.ID
}

func ownerKey(tag, owner string) string { return tag + sufOwner + owner }

func requestKey(tag string, r coordinator.Resource, requestID string) string {
	return tag + sufRequest + r.Type + ":" + r.ID + "/" + requestID
}

// partKeys are partition p's tag and fixed keys, built once (New).
type partKeys struct {
	tag, fence, events, expiry, released string
	// the same, boxed once for the scripts' KEYS and ARGV
	fenceArg, eventsArg, expiryArg, releasedArg any
}

func (l Layout) partKeys() []partKeys {
	parts := make([]partKeys, l.partitions)
	for p := range parts {
		t := l.tag(p)
		parts[p] = partKeys{tag: t, fence: t + sufFence, events: t + sufEvents, expiry: t + sufExpiry, released: t + sufReleased}
		parts[p].fenceArg, parts[p].eventsArg, parts[p].releasedArg = parts[p].fence, parts[p].events, parts[p].released
		parts[p].expiryArg = parts[p].expiry
	}
	return parts
}
