package main

import (
	"strings"
	"testing"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// TestOperatorACLOfTheGuide (issue 16.10): the operator's Redis user of
// docs/operations.md, created from the guide's text on a throwaway Redis,
// runs every command the guide gives it; a command it lacks fails the
// test with the NOPERM it met, so the guide and lockctl cannot part.
func TestOperatorACLOfTheGuide(t *testing.T) {
	rules, err := testredis.DocumentedACL("../../docs/operations.md", "lockcoord-operator", "lockcoord")
	if err != nil {
		t.Fatal(err)
	}
	srv := testredis.Start(t)
	if err := srv.SetUser(t.Context(), "operator", "pw", rules); err != nil {
		t.Fatalf("the guide's ACL does not load: %v", err)
	}
	c := newCLI(t, "redis://operator:pw@"+srv.Addr+"/0")
	for _, argv := range [][]string{
		{"acquire", "plan/acl", "--owner", "op", "--ttl", "1m"},
		{"renew", "plan/acl", "--owner", "op", "--ttl", "1m"},
		{"inspect", "plan/acl"},
		{"inspect", "plan/acl", "--json"},
		{"list"},
		{"list", "--json"},
		{"partitions"},
		{"partitions", "--json"},
		{"key", "plan/acl"},
		{"release", "plan/acl", "--owner", "op"},
		{"acquire", "plan/acl", "--owner", "stuck"},
		{"release", "plan/acl", "--force", "--by", "alice"},
	} {
		r := c.run(argv...)
		if r.code != ExitOK {
			t.Errorf("lockctl %s as the guide's operator: exit %d: %s", strings.Join(argv, " "), r.code, r.stderr)
		}
	}
	// and nothing beyond the prefix or the commands it needs
	for _, cmd := range [][]any{{"SET", "other:key", "x"}, {"FLUSHALL"}, {"CONFIG", "SET", "maxmemory", "1"}} {
		r, err := srv.Do(t.Context(), append([]any{"ACL", "DRYRUN", "operator"}, cmd...)...)
		if err == nil && r == "OK" {
			t.Errorf("the guide's operator may %v", cmd)
		}
	}
}
