package testcluster

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testredis"
	"github.com/lockcoord/lockcoord/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func TestParseClusterNodes(t *testing.T) {
	const reply = `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [12000->-abc]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 16000
`
	nodes, err := parseClusterNodes(reply)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClusterNode{
		{ID: "07c37dfeb235213a872192d90877d0cd55635b91", Addr: "127.0.0.1:30004", MasterID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"},
		{ID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", Addr: "127.0.0.1:30002", Master: true, Slots: [][2]int{{5461, 10922}}},
		{ID: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", Addr: "127.0.0.1:30003", Master: true, Slots: [][2]int{{10923, 16383}}},
		{ID: "6ec23923021cf3ffec47632106199cb7f496ce01", Addr: "127.0.0.1:30005", MasterID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", Failed: true},
		{ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", Addr: "127.0.0.1:30001", Master: true, Slots: [][2]int{{0, 5460}, {16000, 16000}}},
	}
	if !slices.EqualFunc(nodes, want, func(a, b ClusterNode) bool {
		return a.ID == b.ID && a.Addr == b.Addr && a.Master == b.Master && a.MasterID == b.MasterID &&
			a.Failed == b.Failed && slices.Equal(a.Slots, b.Slots)
	}) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", nodes, want)
	}
	for _, bad := range []string{"too few fields", "id 127.0.0.1:1@2 master - 0 0 1 connected 1-x"} {
		if _, err := parseClusterNodes(bad); err == nil {
			t.Errorf("parseClusterNodes(%q) passed", bad)
		}
	}
}

func TestRetryStart(t *testing.T) {
	ctx := t.Context()
	boom := errors.New("port taken")
	for _, tc := range []struct {
		name  string
		retry bool
		errs  []error
		calls int
		err   error
	}{
		{"success at once", true, []error{nil}, 1, nil},
		{"success on the second try", true, []error{boom, nil}, 2, nil},
		{"gives up after three", true, []error{boom, boom, boom, nil}, startAttempts, boom},
		{"no retry in a caller's folder", false, []error{boom, nil}, 1, boom},
		{"no retry without binaries", true, []error{testredis.ErrNotInstalled, nil}, 1, testredis.ErrNotInstalled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := retryStart(ctx, tc.retry, func() (int, error) {
				calls++
				return calls, tc.errs[calls-1]
			})
			if calls != tc.calls || !errors.Is(err, tc.err) || (err == nil && v != calls) {
				t.Fatalf("%d calls, %v, %v; want %d calls, %v", calls, v, err, tc.calls, tc.err)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls := 0
	if _, err := retryStart(cctx, true, func() (int, error) { calls++; return 0, boom }); calls != 1 || !errors.Is(err, boom) {
		t.Fatalf("ended context: %d calls, %v", calls, err)
	}
}
