package testredis

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// aclBlock finds an ACL SETUSER command of the docs: its user and its
// rules up to the end of the code block.
var aclBlock = regexp.MustCompile("(?m)^[ \\t]*ACL SETUSER (\\S+) ([^`]*?)\\n[ \\t]*```")

// DocumentedACL returns the rules of the Redis ACL user named user in the
// guide at path (docs/operations.md), as the guide gives them: every
// "ACL SETUSER <user> ..." code block, its lines joined, without the
// password placeholder (">..._PASSWORD"), with the default prefix
// "lockcoord:" replaced by prefix + ":". Tests create the user from it,
// so that the guide and the behaviour cannot part.
func DocumentedACL(path, user, prefix string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, m := range aclBlock.FindAllStringSubmatch(string(b), -1) {
		if m[1] != user {
			continue
		}
		var rules []string
		for _, f := range strings.Fields(m[2]) {
			if strings.HasPrefix(f, ">") && strings.HasSuffix(f, "_PASSWORD") {
				continue
			}
			rules = append(rules, strings.ReplaceAll(f, "lockcoord:", prefix+":"))
		}
		return rules, nil
	}
	return nil, fmt.Errorf("%s: no ACL SETUSER %s block", path, user)
}

// SetUser creates (or replaces) the ACL user user with password and
// rules on the server.
func (s *Server) SetUser(ctx context.Context, user, password string, rules []string) error {
	args := []any{"ACL", "SETUSER", user, "reset", ">" + password}
	for _, r := range rules {
		args = append(args, r)
	}
	_, err := s.Do(ctx, args...)
	return err
}
