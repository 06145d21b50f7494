package redisstore

import (
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Partition returns the partition of r: crc32(type + "/" + id) mod the
// partition count.
func (s *Store) Partition(r coordinator.Resource) int {
	h := crc32.Update(0, crc32.IEEETable, []byte(r.Type))
	h = crc32.Update(h, crc32.IEEETable, slash)
	h = crc32.Update(h, crc32.IEEETable, []byte(r.ID))
	return int(h % uint32(s.partitions))
}

var slash = []byte{'/'}

// Partitions returns the partition count.
func (s *Store) Partitions() int { return s.partitions }

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// tag returns "<prefix>:{p}", the start of every key of partition p.
func (s *Store) tag(p int) string {
	return s.prefix + ":{" + strconv.Itoa(p) + "}"
}

// partKeys are partition p's tag and fixed keys, built once (New): the
// scripts' hot path then builds only the keys that name a resource.
type partKeys struct {
	tag, fence, events, released string
}

func (s *Store) buildPartKeys() {
	s.parts = make([]partKeys, s.partitions)
	for p := range s.parts {
		t := s.tag(p)
		s.parts[p] = partKeys{tag: t, fence: t + ":fence", events: t + ":events", released: t + ":released"}
	}
}

// Key returns the Redis key of the lease on r:
// <prefix>:{<partition>}:lock:<type>:<id>. The partition tag is the first
// "{...}" of the key, so the id never decides the Cluster slot.
func (s *Store) Key(r coordinator.Resource) string {
	return s.lockKey(s.tag(s.Partition(r)), r)
}

// lockKey returns the lease key of r given the tag of its partition.
func (s *Store) lockKey(tag string, r coordinator.Resource) string {
	return tag + ":lock:" + r.Type + ":" + r.ID
}

// QueueKey returns the key of the queue of coordinators waiting for r.
func (s *Store) QueueKey(r coordinator.Resource) string {
	return s.queueKey(s.tag(s.Partition(r)), r)
}

func (s *Store) queueKey(tag string, r coordinator.Resource) string {
	return tag + ":waiters:" + r.Type + ":" + r.ID
}

// FenceKey returns the key of partition p's fencing counter.
func (s *Store) FenceKey(p int) string { return s.tag(p) + ":fence" }

// StreamKey returns the key of partition p's event stream (the outbox).
func (s *Store) StreamKey(p int) string { return s.tag(p) + ":events" }

// OwnerKey returns the key of owner's lease index in partition p.
func (s *Store) OwnerKey(p int, owner string) string { return s.tag(p) + ":owner:" + owner }

// Channel returns partition p's release notification channel.
func (s *Store) Channel(p int) string { return s.tag(p) + ":released" }

// ConfigKey returns the key recording the partition count of the prefix.
func (s *Store) ConfigKey() string { return s.prefix + ":partitions" }

// ParseKey returns the resource of a lease key written by s, and its
// partition.
func (s *Store) ParseKey(key string) (coordinator.Resource, int, error) {
	rest, ok := strings.CutPrefix(key, s.prefix+":{")
	bad := func(why string) (coordinator.Resource, int, error) {
		return coordinator.Resource{}, 0, &coordinator.ValidationError{Field: "lease key", Value: key, Rule: why}
	}
	if !ok {
		return bad("must start with " + s.prefix + ":{")
	}
	ps, rest, ok := strings.Cut(rest, "}:lock:")
	if !ok {
		return bad("must have the form <prefix>:{<partition>}:lock:<type>:<id>")
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p >= s.partitions || strconv.Itoa(p) != ps {
		return bad(fmt.Sprintf("partition must be an integer from 0 to %d", s.partitions-1))
	}
	typ, id, _ := strings.Cut(rest, ":")
	r := coordinator.Resource{Type: typ, ID: id}
	if err := r.Validate(); err != nil {
		return coordinator.Resource{}, 0, err
	}
	if s.Partition(r) != p {
		return bad(fmt.Sprintf("resource %s belongs to partition %d", r, s.Partition(r)))
	}
	return r, p, nil
}
