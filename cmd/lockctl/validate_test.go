package main

import (
	"strings"
	"testing"
)

// TestInputBounds: every flag and argument of a concept the library
// validates (TTL, owner, resource, operator, list limit) goes through the
// library's validator in every command that takes it (issue 16.6): a bad
// value exits 2 with a message naming the flag and the rule, and changes
// nothing (the lease is free afterwards).
func TestInputBounds(t *testing.T) {
	mr, url := newMiniredis(t)
	c := newCLI(t, url)
	type bad struct {
		value, rule string
	}
	ttls := []bad{{"0s", "from 1ms"}, {"-1s", "from 1ms"}, {"500us", "from 1ms"}, {"2562047h", "to 8760h0m0s"}, {"8761h", "to 8760h0m0s"}}
	owners := []bad{{" ", "white space"}, {"\t \t", "white space"}, {"a\x01b", "printable"}, {strings.Repeat("o", 513), "1-512 bytes"}}
	resources := []bad{{"plan/ ", "white space"}, {"plan/", "1-512 bytes"}, {"Plan/1", "[a-z]"}, {"plan", "type/id"}}
	cases := map[string]struct {
		argv   func(v string) []string
		values []bad
		flag   string
	}{
		"acquire --ttl":    {func(v string) []string { return []string{"acquire", "plan/v", "--owner", "w", "--ttl", v} }, ttls, "--ttl"},
		"renew --ttl":      {func(v string) []string { return []string{"renew", "plan/v", "--owner", "w", "--ttl", v} }, ttls, "--ttl"},
		"run --ttl":        {func(v string) []string { return []string{"run", "plan/v", "--ttl", v, "--", "true"} }, ttls, "--ttl"},
		"lead --ttl":       {func(v string) []string { return []string{"lead", "sched", "--ttl", v, "--", "true"} }, ttls, "--ttl"},
		"lead --candidate": {func(v string) []string { return []string{"lead", "sched", "--candidate", v, "--", "true"} }, owners, "--candidate"},
		"demo --ttl":       {func(v string) []string { return []string{"demo", "--quiet", "--duration", "1s", "--ttl", v} }, ttls, "--ttl"},
		"acquire --owner":  {func(v string) []string { return []string{"acquire", "plan/v", "--owner", v} }, owners, "--owner"},
		"renew --owner":    {func(v string) []string { return []string{"renew", "plan/v", "--owner", v} }, owners, "--owner"},
		"release --owner":  {func(v string) []string { return []string{"release", "plan/v", "--owner", v} }, owners, "--owner"},
		"run --owner":      {func(v string) []string { return []string{"run", "plan/v", "--owner", v, "--", "true"} }, owners, "--owner"},
		"list --owner":     {func(v string) []string { return []string{"list", "--owner", v} }, owners, "--owner"},
		"release --by":     {func(v string) []string { return []string{"release", "plan/v", "--force", "--by", v} }, owners, "--by"},
		"acquire resource": {func(v string) []string { return []string{"acquire", v, "--owner", "w"} }, resources, "resource"},
		"renew resource":   {func(v string) []string { return []string{"renew", v, "--owner", "w"} }, resources, "resource"},
		"release resource": {func(v string) []string { return []string{"release", v, "--owner", "w"} }, resources, "resource"},
		"force resource":   {func(v string) []string { return []string{"release", v, "--force"} }, resources, "resource"},
		"inspect resource": {func(v string) []string { return []string{"inspect", v} }, resources, "resource"},
		"key resource":     {func(v string) []string { return []string{"key", v} }, resources, "resource"},
		"run resource":     {func(v string) []string { return []string{"run", v, "--", "true"} }, resources, "resource"},
		"diagnostics --limit": {func(v string) []string {
			return []string{"diagnostics", "--database-url", "postgres://127.0.0.1:1/x", "--limit", v}
		}, []bad{{"-1", "must not be negative"}}, "--limit"},
		"dead-letters --limit": {func(v string) []string {
			return []string{"dead-letters", "--database-url", "postgres://127.0.0.1:1/x", "--limit", v}
		}, []bad{{"-1", "must not be negative"}}, "--limit"},
	}
	for name, tc := range cases {
		for _, b := range tc.values {
			r := c.run(tc.argv(b.value)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.flag) || !strings.Contains(r.stderr, b.rule) {
				t.Errorf("%s %q: exit %d, stderr %q; want %d naming %s and %q", name, b.value, r.code, r.stderr, ExitUsage, tc.flag, b.rule)
			}
		}
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Fatalf("refused calls wrote %v", keys)
	}
	// --by goes with --force
	r := c.run("release", "plan/v", "--owner", "w", "--by", "alice").want(t, ExitUsage)
	if !strings.Contains(r.stderr, "--by goes with --force") {
		t.Fatalf("release --by without --force: %q", r.stderr)
	}
}
