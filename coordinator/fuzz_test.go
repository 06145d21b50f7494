package coordinator_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/lockcoord/lockcoord/coordinator"
)

// The oracle: DESIGN.md's rules written independently of resource.go,
// and issue 16.6's: an ID or owner of white space alone names nothing.
var typeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

func validName(s string) bool {
	if len(s) < 1 || len(s) > 512 || !utf8.ValidString(s) || strings.TrimSpace(s) == "" {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

func validResource(r coordinator.Resource) bool { return typeRE.MatchString(r.Type) && validName(r.ID) }

// FuzzParseResource checks, for any type and id: Validate agrees with the
// oracle; a valid resource survives String and ParseResource unchanged;
// ParseResource of any string either fails with ErrInvalid or returns a
// valid resource that prints as that string; nothing panics.
func FuzzParseResource(f *testing.F) {
	for _, seed := range [][2]string{
		{"plan", "42"}, {"project", "a/b/c"}, {"job", "ünï cödé ☃"}, {"a", strings.Repeat("😀", 128)},
		{"a", strings.Repeat("😀", 129)}, {"plan/x", "y"}, {"Plan", "1"}, {"", ""}, {"plan", ""},
		{"plan", "a\nb"}, {"plan", "\xff"}, {"x-_9", " "}, {strings.Repeat("a", 64), "1"}, {strings.Repeat("a", 65), "1"},
		{"plan", "{0}:lock:x"}, {"p", "a\u200bb"}, {"p", strings.Repeat("x", 512)}, {"p", strings.Repeat("x", 513)},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, typ, id string) {
		r := coordinator.Resource{Type: typ, ID: id}
		err := r.Validate()
		if want := validResource(r); (err == nil) != want {
			t.Fatalf("Validate(%q) = %v, but the rules say valid = %v", r, err, want)
		}
		if err != nil && !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("Validate(%q) = %v, not ErrInvalid", r, err)
		}
		got, perr := coordinator.ParseResource(r.String())
		if err == nil && (perr != nil || got != r) {
			t.Fatalf("ParseResource(%q) = %#v, %v; want %#v", r.String(), got, perr, r)
		}

		// any string, e.g. the type alone
		for _, s := range []string{typ, id, r.String()} {
			got, err := coordinator.ParseResource(s)
			if err != nil {
				var ve *coordinator.ValidationError
				if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field == "" || ve.Rule == "" {
					t.Fatalf("ParseResource(%q): %v, want a ValidationError", s, err)
				}
				if got != (coordinator.Resource{}) {
					t.Fatalf("ParseResource(%q) returned %#v with an error", s, got)
				}
				// the oracle: no split of s at its first slash is valid
				if typ, id, ok := strings.Cut(s, "/"); ok && validResource(coordinator.Resource{Type: typ, ID: id}) {
					t.Fatalf("ParseResource(%q) rejected a valid resource: %v", s, err)
				}
				continue
			}
			if !validResource(got) || got.String() != s {
				t.Fatalf("ParseResource(%q) = %#v, which is invalid or prints as %q", s, got, got.String())
			}
		}
	})
}
