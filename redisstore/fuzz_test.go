package redisstore_test

import (
	"errors"
	"hash/crc32"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// fuzzPrefixes are valid prefixes the fuzzers pick from.
var fuzzPrefixes = []string{"lockcoord", "a", "app.locks:v2", "X-_.:9", strings.Repeat("p", 64)}

// keyStore returns a store for key computations only: its client never
// connects.
func keyStore(t testing.TB, c redis.UniversalClient, prefix uint8, partitions uint16) *redisstore.Store {
	n := int(partitions)%redisstore.MaxPartitions + 1
	return redisstore.New(c, redisstore.WithPrefix(fuzzPrefixes[int(prefix)%len(fuzzPrefixes)]), redisstore.WithPartitions(n))
}

func idleClient(f *testing.F) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	f.Cleanup(func() { _ = c.Close() })
	return c
}

// checkKey checks the key of a valid resource: under the prefix, its first
// {...} the partition tag crc32(type/id) mod P, and parsed back.
func checkKey(t *testing.T, s *redisstore.Store, r coordinator.Resource) string {
	t.Helper()
	key := s.Layout().LeaseKey(r)
	if !strings.HasPrefix(key, s.Layout().Prefix()+":{") {
		t.Fatalf("key %q of %v is not under %q", key, r, s.Layout().Prefix()+":{")
	}
	p := int(crc32.ChecksumIEEE([]byte(r.Type+"/"+r.ID)) % uint32(s.Layout().Partitions()))
	open := strings.IndexByte(key, '{')
	end := strings.IndexByte(key[open:], '}')
	if end < 0 || key[open:open+end+1] != "{"+strconv.Itoa(p)+"}" {
		t.Fatalf("key %q of %v: first hash tag is not {%d}", key, r, p)
	}
	if s.Layout().Partition(r) != p {
		t.Fatalf("Partition(%v) = %d, want %d", r, s.Layout().Partition(r), p)
	}
	got, gp, err := s.Layout().ParseLeaseKey(key)
	if err != nil || got != r || gp != p {
		t.Fatalf("ParseKey(%q) = %v, %d, %v; want %v, %d", key, got, gp, err, r, p)
	}
	return key
}

func FuzzKey(f *testing.F) {
	c := idleClient(f)
	long := strings.Repeat("é", 256) // 512 bytes
	for _, s := range []struct {
		prefix           uint8
		partitions       uint16
		t1, id1, t2, id2 string
	}{
		{0, 15, "plan", "42", "plan", "43"},
		{1, 0, "plan", "4:2", "plan:4", "2"},
		{2, 7, "job", "a/b", "job/a", "b"},
		{3, 16383, "x", "}{", "x", "{}"},
		{4, 255, "project", long, "project", long[:510] + "e"},
		{0, 15, "a-_9", "ünï cödé ☃", "a", "-_9:ünï cödé ☃"},
		{2, 1, "plan", "42", "Plan", "42"},
	} {
		f.Add(s.prefix, s.partitions, s.t1, s.id1, s.t2, s.id2)
	}
	f.Fuzz(func(t *testing.T, prefix uint8, partitions uint16, t1, id1, t2, id2 string) {
		s := keyStore(t, c, prefix, partitions)
		r1, r2 := coordinator.Resource{Type: t1, ID: id1}, coordinator.Resource{Type: t2, ID: id2}
		var k1, k2 string
		if r1.Validate() == nil {
			k1 = checkKey(t, s, r1)
		}
		if r2.Validate() == nil {
			k2 = checkKey(t, s, r2)
		}
		if k1 != "" && k2 != "" && r1 != r2 && k1 == k2 {
			t.Fatalf("%v and %v share the key %q", r1, r2, k1)
		}
	})
}

// FuzzParseKey: ParseKey never panics, and accepts exactly the keys Key
// writes.
func FuzzParseKey(f *testing.F) {
	c := idleClient(f)
	for _, k := range []string{
		"lockcoord:{3}:lock:plan:42", "lockcoord:{03}:lock:plan:42", "lockcoord:{3}:lock:plan", "lockcoord:{}:lock:a:b",
		"a:{0}:lock:x:y:z", "lockcoord:{99999999999999999999}:lock:a:b", "lockcoord:{-0}:lock:a:b", "",
	} {
		f.Add(uint8(0), uint16(15), k)
		f.Add(uint8(1), uint16(0), k)
	}
	f.Fuzz(func(t *testing.T, prefix uint8, partitions uint16, key string) {
		s := keyStore(t, c, prefix, partitions)
		r, p, err := s.Layout().ParseLeaseKey(key)
		if err != nil {
			if !errors.Is(err, coordinator.ErrInvalid) {
				t.Fatalf("ParseKey(%q): %v, want ErrInvalid", key, err)
			}
			return
		}
		if s.Layout().LeaseKey(r) != key || s.Layout().Partition(r) != p || r.Validate() != nil {
			t.Fatalf("ParseKey(%q) = %v, %d: Key gives %q, partition %d", key, r, p, s.Layout().LeaseKey(r), s.Layout().Partition(r))
		}
	})
}
