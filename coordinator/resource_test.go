package coordinator_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

// a 512-byte id of 4-byte runes, and one a rune longer
var (
	emoji512 = strings.Repeat("😀", 128)
	emoji516 = strings.Repeat("😀", 129)
)

func TestResourceString(t *testing.T) {
	for _, tc := range []struct {
		r    coordinator.Resource
		want string
	}{
		{coordinator.Plan("42"), "plan/42"},
		{coordinator.Project("p-7"), "project/p-7"},
		{coordinator.Resource{Type: "job", ID: "a/b/c"}, "job/a/b/c"},
		{coordinator.Resource{Type: "x", ID: "ünï cödé ☃"}, "x/ünï cödé ☃"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
	if p := coordinator.Plan("1"); p.Type != "plan" || p.ID != "1" {
		t.Errorf("Plan(1) = %#v", p)
	}
	if p := coordinator.Project("1"); p.Type != "project" || p.ID != "1" {
		t.Errorf("Project(1) = %#v", p)
	}
}

func TestParseResource(t *testing.T) {
	type64 := strings.Repeat("t", 64)
	id512 := strings.Repeat("i", 512)
	for _, tc := range []struct {
		in    string
		want  coordinator.Resource // zero: invalid
		field string               // the field the error names
	}{
		{in: "plan/42", want: coordinator.Plan("42")},
		{in: "project/x", want: coordinator.Project("x")},
		{in: "job/a/b/c", want: coordinator.Resource{Type: "job", ID: "a/b/c"}},
		{in: "job//", want: coordinator.Resource{Type: "job", ID: "/"}},
		{in: "a/ünï cödé ☃", want: coordinator.Resource{Type: "a", ID: "ünï cödé ☃"}},
		{in: "x-1_y/ spaced id ", want: coordinator.Resource{Type: "x-1_y", ID: " spaced id "}},
		{in: "j/{p}:lock:x", want: coordinator.Resource{Type: "j", ID: "{p}:lock:x"}},
		{in: type64 + "/1", want: coordinator.Resource{Type: type64, ID: "1"}},
		{in: "plan/" + id512, want: coordinator.Plan(id512)},
		{in: "plan/" + emoji512, want: coordinator.Plan(emoji512)},

		{in: "", field: "resource"},
		{in: "plan", field: "resource"},
		{in: "plan:42", field: "resource"},
		{in: "/42", field: "resource type"},
		{in: "Plan/42", field: "resource type"},
		{in: "1plan/42", field: "resource type"},
		{in: "-plan/42", field: "resource type"},
		{in: "pl an/42", field: "resource type"},
		{in: "plän/42", field: "resource type"},
		{in: "pl:an/42", field: "resource type"},
		{in: type64 + "t/1", field: "resource type"},
		{in: "plan/", field: "resource id"},
		{in: "plan/" + id512 + "i", field: "resource id"},
		{in: "plan/" + emoji516, field: "resource id"},
		{in: "plan/a\nb", field: "resource id"},
		{in: "plan/a\tb", field: "resource id"},
		{in: "plan/a\x00", field: "resource id"},
		{in: "plan/a\x7f", field: "resource id"},
		{in: "plan/a\u0085", field: "resource id"},
		{in: "plan/a\u200bb", field: "resource id"},
		{in: "plan/a\u00a0b", field: "resource id"},
		{in: "plan/a\u2028b", field: "resource id"},
		{in: "plan/a\xffb", field: "resource id"},
		{in: "plan/" + emoji512[:511], field: "resource id"}, // a rune cut short
	} {
		got, err := coordinator.ParseResource(tc.in)
		if tc.field == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseResource(%.60q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate(%.60q) = %v", tc.in, err)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %.60q, want %.60q", got.String(), tc.in)
			}
			continue
		}
		var ve *coordinator.ValidationError
		if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != tc.field || ve.Rule == "" {
			t.Errorf("ParseResource(%.60q) = %#v, %v; want ErrInvalid naming %q", tc.in, got, err, tc.field)
			continue
		}
		if got != (coordinator.Resource{}) {
			t.Errorf("ParseResource(%.60q) returned %#v with an error", tc.in, got)
		}
		if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), ve.Rule) {
			t.Errorf("message %q does not name the field and the rule", err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	for _, tc := range []struct {
		r        coordinator.Resource
		ruleHint string // a word the rule must contain; "" for valid
	}{
		{coordinator.Resource{Type: "a", ID: "1"}, ""},
		{coordinator.Resource{Type: "a0_-", ID: "x"}, ""},
		{coordinator.Resource{Type: "plan", ID: strings.Repeat("é", 256)}, ""},
		{coordinator.Resource{Type: "plan", ID: "中文/日本語 😀"}, ""},
		{coordinator.Resource{Type: "", ID: "1"}, "[a-z]"},
		{coordinator.Resource{Type: "a", ID: ""}, "1-512 bytes, got 0"},
		{coordinator.Resource{Type: "a", ID: strings.Repeat("é", 256) + "e"}, "got 513"},
		{coordinator.Resource{Type: "a", ID: "a\xc3"}, "UTF-8"},
		{coordinator.Resource{Type: "a", ID: "bell\a"}, "U+0007"},
		{coordinator.Resource{Type: "a", ID: "zero\u200bwidth"}, "U+200B"},
	} {
		err := tc.r.Validate()
		if tc.ruleHint == "" {
			if err != nil {
				t.Errorf("Validate(%#v) = %v", tc.r, err)
			}
			continue
		}
		var ve *coordinator.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Rule, tc.ruleHint) {
			t.Errorf("Validate(%.60q) = %v, want a rule mentioning %q", tc.r, err, tc.ruleHint)
		}
	}
	// owners follow the id rules
	for owner, ok := range map[string]bool{
		"w1": true, "host-1:pid 42/worker ü": true, strings.Repeat("o", 512): true, emoji512: true,
		"": false, strings.Repeat("o", 513): false, emoji516: false, "w\n1": false, "w\x00": false, "\xfe": false,
	} {
		err := coordinator.ValidateOwner(owner)
		var ve *coordinator.ValidationError
		switch {
		case ok && err != nil:
			t.Errorf("ValidateOwner(%.40q) = %v", owner, err)
		case !ok && (!errors.As(err, &ve) || ve.Field != "owner"):
			t.Errorf("ValidateOwner(%.40q) = %v, want a ValidationError naming owner", owner, err)
		}
	}
	for typ, ok := range map[string]bool{"a": true, "z9": true, strings.Repeat("a", 64): true, "a-": true, "a_": true,
		"": false, "_a": false, "9a": false, "A": false, "aB": false, "a.b": false, "a/b": false, strings.Repeat("a", 65): false} {
		if err := coordinator.ValidateType(typ); (err == nil) != ok {
			t.Errorf("ValidateType(%q) = %v, want valid %v", typ, err, ok)
		}
	}
}

func TestValidationErrorShortensValue(t *testing.T) {
	long := strings.Repeat("x", 600)
	err := coordinator.Plan(long).Validate()
	var ve *coordinator.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v", err)
	}
	if ve.Value != strings.Repeat("x", 40)+"…" {
		t.Fatalf("Value = %q, want the first 40 bytes and an ellipsis", ve.Value)
	}
	want := `coordinator: invalid resource id "` + strings.Repeat("x", 40) + `…": must be 1-512 bytes, got 600`
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err, want)
	}
}

func TestValidateRequestIDAndTTL(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, "0f3e9a7b5c1d2e4f-1z": true, "A.b_c:d-e": true, strings.Repeat("r", 128): true,
		"": false, "a b": false, "a\x00": false, "a/b": false, "ü": false, "a\n": false, strings.Repeat("r", 129): false,
	} {
		err := coordinator.ValidateRequestID(id)
		var ve *coordinator.ValidationError
		switch {
		case ok && err != nil:
			t.Errorf("ValidateRequestID(%q) = %v", id, err)
		case !ok && (!errors.As(err, &ve) || ve.Field != "request id" || !strings.Contains(ve.Rule, "[A-Za-z0-9._:-]")):
			t.Errorf("ValidateRequestID(%.40q) = %v, want a ValidationError naming request id and its rule", id, err)
		}
	}
	for d, ok := range map[time.Duration]bool{time.Millisecond: true, time.Hour: true, 0: false, -time.Second: false, time.Microsecond: false} {
		err := coordinator.ValidateTTL(d)
		var ve *coordinator.ValidationError
		switch {
		case ok && err != nil:
			t.Errorf("ValidateTTL(%v) = %v", d, err)
		case !ok && (!errors.As(err, &ve) || ve.Field != "TTL"):
			t.Errorf("ValidateTTL(%v) = %v, want a ValidationError naming TTL", d, err)
		}
	}
}

// TestBlankNames: an owner, an operator or a resource ID of white space
// alone names nobody a person can tell apart (issue 16.6); the error names
// the field and the rule.
func TestBlankNames(t *testing.T) {
	for _, blank := range []string{" ", "\t", "  \u00a0 "} {
		for field, err := range map[string]error{
			"owner":       coordinator.ValidateOwner(blank),
			"by":          coordinator.ValidateOperator(blank),
			"resource id": coordinator.Plan(blank).Validate(),
		} {
			var ve *coordinator.ValidationError
			if !errors.As(err, &ve) || ve.Field != field || !strings.Contains(ve.Rule, "white space") {
				t.Errorf("%s %q: %v, want a ValidationError of %s naming white space", field, blank, err, field)
			}
		}
	}
	for _, ok := range []string{"a b", " a", "ops@host"} {
		if err := coordinator.ValidateOperator(ok); err != nil {
			t.Errorf("ValidateOperator(%q) = %v", ok, err)
		}
	}
}
