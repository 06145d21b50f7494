package redisstore

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// check reports each way a stream can lose what a reader had not read.
func TestWatchCheck(t *testing.T) {
	rd := &reader{cursors: map[int]*cursor{}}
	h := &watchHub{}
	for _, tc := range []struct {
		name    string
		cur     cursor
		info    redis.XInfoStream
		missing bool
		gap     string // a word of the reason; "" for none
		after   string // the cursor after
	}{
		{"caught up", cursor{"5-0", 3}, redis.XInfoStream{LastGeneratedID: "5-0", EntriesAdded: 3, MaxDeletedEntryID: "4-0"}, false, "", "5-0"},
		{"trimmed past", cursor{"5-0", 3}, redis.XInfoStream{LastGeneratedID: "9-0", EntriesAdded: 9, MaxDeletedEntryID: "7-1"}, false, "trimmed", "7-1"},
		{"replaced", cursor{"5-0", 30}, redis.XInfoStream{LastGeneratedID: "9-0", EntriesAdded: 2}, false, "replaced", "5-0"},
		{"went back", cursor{"5-0", 0}, redis.XInfoStream{LastGeneratedID: "4-0"}, false, "went back", "5-0"},
		{"gone", cursor{"5-0", 0}, redis.XInfoStream{}, true, "gone", "5-0"},
		{"not yet there", cursor{"0-0", 0}, redis.XInfoStream{}, true, "", "0-0"},
	} {
		c := tc.cur
		rd.cursors[3] = &c
		gap := rd.check(h, 3, c.id, &tc.info, tc.missing)
		if (gap == "") != (tc.gap == "") || !strings.Contains(gap, tc.gap) || c.id != tc.after {
			t.Errorf("%s: gap %q, cursor %s; want %q, %s", tc.name, gap, c.id, tc.gap, tc.after)
		}
	}
	if gap := rd.check(h, 3, "1-0", &redis.XInfoStream{}, true); gap != "" {
		t.Errorf("a read of a cursor since moved: gap %q", gap)
	}
}

func TestEventOf(t *testing.T) {
	ok := map[string]any{"event": "acquired", "type": "plan", "id": "1", "owner": "w", "token": "7", "count": "1",
		"at": "1000", "acquired_at": "1000", "expires_at": "4000", "meta": "m", "mode": "shared", "cap": "3"}
	ev, err := eventOf(redis.XMessage{ID: "1000-0", Values: ok})
	if err != nil || ev.Lease.Remaining.Milliseconds() != 3000 || ev.Lease.Meta != "m" || ev.Lease.Permits != 3 || ev.Lease.Token != 7 {
		t.Fatalf("eventOf = %+v, %v", ev, err)
	}
	bad := map[string]any{"event": "acquired", "type": "plan", "id": "1", "token": "x"}
	if _, err := eventOf(redis.XMessage{ID: "1-0", Values: bad}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("eventOf of a bad token: %v", err)
	}
	if _, err := eventOf(redis.XMessage{ID: "1-0", Values: map[string]any{"type": "Plan"}}); err == nil {
		t.Fatal("eventOf of no event")
	}
	if cmpID("2-0", "10-0") >= 0 || cmpID("2-10", "2-9") <= 0 || cmpID("3-3", "3-3") != 0 || cmpID("9-0", "2-0") <= 0 {
		t.Fatal("cmpID")
	}
}
