package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
)

// The partition count is recorded twice: under the prefix's ConfigKey
// (<prefix>:partitions), and as a marker in each partition's fence key,
// "<last token>/<partition count>", which acquire.lua writes with the
// token and checks in the same command (SET ... GET) on every fresh
// acquisition. A fence marked with another count makes the acquisition
// fail with ErrPartitionMismatch; a fence without a marker (the partition
// lost its data, or was never used) makes the store check the recorded
// count again before it marks it (CheckPartitions). docs/redis-keys.md
// describes both.

// PartitionReport is what Redis records of the partition count of a
// store's prefix (Store.ReadPartitions).
type PartitionReport struct {
	// Recorded is the count under the layout's ConfigKey; 0 when absent.
	Recorded int
	// Marks maps each partition of the store's layout whose fence key
	// carries a marker to the count of the marker.
	Marks map[int]int
}

// Disagreement returns an error wrapping ErrPartitionMismatch when the
// recorded count or a fence's marker is not n, naming both counts, or
// nil.
func (r PartitionReport) Disagreement(l Layout, n int) error {
	if r.Recorded != 0 && r.Recorded != n {
		return fmt.Errorf("%w: prefix %q is used with %d partitions (%s), this store has %d",
			ErrPartitionMismatch, l.prefix, r.Recorded, l.ConfigKey(), n)
	}
	for p := range l.partitions {
		if m, ok := r.Marks[p]; ok && m != n {
			return fmt.Errorf("%w: prefix %q is used with %d partitions (%s is marked %d), this store has %d",
				ErrPartitionMismatch, l.prefix, m, l.FenceKey(p), m, n)
		}
	}
	return nil
}

// ReadPartitions reads the recorded partition count and the marker of
// each fence key of the store's layout (one pipeline, a GET per
// partition). It writes nothing. A recorded count or a marker that is not
// a number gives an error naming its key.
func (s *Store) ReadPartitions(ctx context.Context) (PartitionReport, error) {
	if s.cfgErr != nil {
		return PartitionReport{}, s.cfgErr
	}
	rep, err := s.readPartitions(ctx)
	if err != nil {
		return rep, fmt.Errorf("redisstore: read the partition count of prefix %q: %w", s.layout.prefix, err)
	}
	return rep, nil
}

// readPartitions is ReadPartitions, its error not naming the operation.
func (s *Store) readPartitions(ctx context.Context) (PartitionReport, error) {
	rep := PartitionReport{Marks: map[int]int{}}
	fences := make([]*redis.StringCmd, s.layout.partitions)
	var rec *redis.StringCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.Get(ctx, s.layout.ConfigKey())
		for i := range fences {
			fences[i] = p.Get(ctx, s.layout.FenceKey(i))
		}
		return nil
	})
	s.refreshOnFailure(err)
	if err != nil && !errors.Is(err, redis.Nil) {
		return rep, failure("read the fences", err)
	}
	if rep.Recorded, err = s.recorded(rec); err != nil {
		return rep, err
	}
	for p, c := range fences {
		if n, marked, err := fenceMark(c.Val()); err != nil {
			return rep, fmt.Errorf("fence %s: %w", s.layout.FenceKey(p), err)
		} else if marked {
			rep.Marks[p] = n
		}
	}
	return rep, nil
}

// recorded is the count of a GET of the ConfigKey; 0 when absent.
func (s *Store) recorded(c *redis.StringCmd) (int, error) {
	v, err := c.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, nil
	case err != nil:
		return 0, failure("read the partition count from "+s.layout.ConfigKey(), err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("read the partition count from %s: %q is not a partition count", s.layout.ConfigKey(), v)
	}
	return n, nil
}

// fenceMark returns the partition count a fence value is marked with
// ("<token>/<count>"), and whether it has a marker; "" (no key) and a
// bare token (written before markers, or by hand) have none.
func fenceMark(v string) (int, bool, error) {
	_, m, ok := strings.Cut(v, "/")
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(m)
	if err != nil || n < 1 {
		return 0, false, fmt.Errorf("marker %q is not a partition count", m)
	}
	return n, true, nil
}

// ParseFence returns the last fencing token of a fence key's value
// (Layout.FenceKey), "<token>/<partition count>", and the count of its
// marker; 0 for a value without one (a bare token, written before the
// markers or by hand).
func ParseFence(v string) (token uint64, partitions int, err error) {
	t, _, _ := strings.Cut(v, "/")
	if token, err = strconv.ParseUint(t, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("redisstore: fence %q: token: %w", v, err)
	}
	if partitions, _, err = fenceMark(v); err != nil {
		return 0, 0, fmt.Errorf("redisstore: fence %q: %w", v, err)
	}
	return token, partitions, nil
}

// CheckPartitions checks the store's partition count against what Redis
// records for its prefix and returns an error wrapping
// ErrPartitionMismatch, naming both counts, when they differ. When no
// count is recorded (a new prefix, or one whose <prefix>:partitions was
// lost), it first reads the markers of the partitions' fence keys (a
// store of another count leaves its own there, see ReadPartitions), and
// records its count (SET NX) only when none disagrees. An unreachable
// Redis gives an error wrapping coordinator.ErrUnavailable.
func (s *Store) CheckPartitions(ctx context.Context) error {
	if err := s.checkPartitions(ctx); err != nil {
		return fmt.Errorf("redisstore: check partition count: %w", err)
	}
	return nil
}

// checkPartitions is CheckPartitions; its error does not name the
// operation, the caller's (acquire plan/42) does, and an unreachable
// Redis is only that, not the step that met it.
func (s *Store) checkPartitions(ctx context.Context) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	key, n := s.layout.ConfigKey(), s.layout.partitions
	got, err := s.recorded(s.client.Get(ctx, key))
	if err != nil {
		return err
	}
	if got == 0 {
		rep, err := s.readPartitions(ctx)
		if err != nil {
			return err
		}
		if err := rep.Disagreement(s.layout, n); err != nil {
			return err
		}
		if err := s.client.SetNX(ctx, key, n, 0).Err(); err != nil {
			return failure("record the partition count under "+key, err)
		}
		if got, err = s.recorded(s.client.Get(ctx, key)); err != nil {
			return err
		}
	}
	return PartitionReport{Recorded: got}.Disagreement(s.layout, n)
}

// failure is err, a failed step: ErrUnavailable when Redis could not be
// reached (only that), else the step and the error.
func failure(step string, err error) error {
	s := storeError(err)
	if errors.Is(s, coordinator.ErrUnavailable) {
		return s
	}
	return fmt.Errorf("%s: %w", step, err)
}

// unmarked reports whether err is acquire.lua's refusal of a partition
// whose fence key has no marker: the store checks the configuration and
// the count again (recheck), then marks the fence.
func unmarked(err error) bool {
	if err == nil {
		return false
	}
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), "lockcoord: unmarked ")
}
