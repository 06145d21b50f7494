package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// leaseView is a lease as lockctl prints it.
type leaseView struct {
	Resource   string            `json:"resource"`
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Held       bool              `json:"held"`
	Owner      string            `json:"owner,omitempty"`
	Token      uint64            `json:"token,omitempty,string"` // a decimal string: exact in JavaScript and jq
	Count      int               `json:"count"`
	Mode       string            `json:"mode,omitempty"`    // "exclusive" or "shared", when held
	Permits    int               `json:"permits,omitempty"` // the cap recorded on a shared resource
	Holders    int               `json:"holders,omitempty"` // how many owners hold the resource, when known
	Meta       string            `json:"meta,omitempty"`    // the holder's metadata
	AcquiredAt *time.Time        `json:"acquired_at,omitempty"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	PTTLMillis *int64            `json:"pttl_ms,omitempty"` // remaining TTL of the key (PTTL), when read
	Key        string            `json:"key"`
	Partition  int               `json:"partition"`
	Fields     map[string]string `json:"fields,omitempty"` // the raw hash, for inspect
}

// newLeaseView describes l (Count 0: released or free) on store s.
func newLeaseView(s *redisstore.Store, r coordinator.Resource, l coordinator.Lease) leaseView {
	v := leaseView{Resource: r.String(), Type: r.Type, ID: r.ID, Key: s.Layout().LeaseKey(r), Partition: s.Layout().Partition(r)}
	if l.Owner != "" {
		v.Owner, v.Token, v.Count, v.Held = l.Owner, l.Token, l.Count, l.Count > 0
		v.Mode, v.Permits, v.Meta = l.Mode.String(), l.Permits, l.Meta
		if !l.AcquiredAt.IsZero() {
			at := l.AcquiredAt.UTC()
			v.AcquiredAt = &at
		}
		if !l.ExpiresAt.IsZero() {
			at := l.ExpiresAt.UTC()
			v.ExpiresAt = &at
		}
	}
	return v
}

// modeText is the mode of a lease in a line of text: "" for an exclusive
// lease (as before modes), " mode=shared" and its cap for a shared one.
func modeText(v leaseView) string {
	if v.Mode != coordinator.ModeShared.String() {
		return ""
	}
	if v.Permits > 0 {
		return " mode=shared permits=" + strconv.Itoa(v.Permits)
	}
	return " mode=shared"
}

func (v leaseView) withPTTL(d time.Duration) leaseView {
	ms := d.Milliseconds()
	v.PTTLMillis = &ms
	return v
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format("2006-01-02T15:04:05.000Z07:00")
}

func fmtPTTL(ms *int64) string {
	if ms == nil {
		return "-"
	}
	return (time.Duration(*ms) * time.Millisecond).String()
}

// writeLeaseText prints v as aligned "name value" lines.
func writeLeaseText(w io.Writer, v leaseView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, val string) { fmt.Fprintf(tw, "%s\t%s\n", k, val) }
	line("resource", v.Resource)
	line("key", v.Key)
	line("partition", strconv.Itoa(v.Partition))
	if !v.Held && v.Owner == "" {
		line("state", "free")
		return tw.Flush()
	}
	state := "held"
	if !v.Held {
		state = "released"
	}
	line("state", state)
	line("owner", v.Owner)
	if v.Mode != "" {
		line("mode", v.Mode)
	}
	if v.Permits > 0 {
		line("permits", strconv.Itoa(v.Permits))
	}
	if v.Holders > 0 {
		line("holders", strconv.Itoa(v.Holders))
	}
	if v.Meta != "" {
		line("meta", strconv.Quote(v.Meta))
	}
	line("token", strconv.FormatUint(v.Token, 10))
	line("count", strconv.Itoa(v.Count))
	line("acquired_at", fmtTime(v.AcquiredAt))
	line("expires_at", fmtTime(v.ExpiresAt))
	if v.PTTLMillis != nil {
		line("pttl", fmtPTTL(v.PTTLMillis))
	}
	if len(v.Fields) > 0 {
		keys := make([]string, 0, len(v.Fields))
		for k := range v.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			name := ""
			if i == 0 {
				name = "fields"
			}
			line(name, k+"="+strconv.Quote(v.Fields[k]))
		}
	}
	return tw.Flush()
}

// jsonError is the JSON object of a failure, where a command's output
// is JSON: the one-line message and the exit status.
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// jsonFailure returns err with its exit status; with asJSON it also
// prints its jsonError on stdout, so that a script reading JSON always
// gets one complete object.
func (a *app) jsonFailure(asJSON bool, err error) error {
	code, msg := a.classify(err)
	msg = oneLine(msg)
	if asJSON {
		_ = writeJSON(a.stdout, jsonError{Error: msg, ExitCode: code})
	}
	return exitWith(code, errors.New(msg))
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeLeases prints each view as a line of JSON, or as "name value"
// lines, a blank line between two views.
func writeLeases(w io.Writer, asJSON bool, vs []leaseView) error {
	for i, v := range vs {
		var err error
		switch {
		case asJSON:
			err = writeJSON(w, v)
		case i > 0:
			if _, err = io.WriteString(w, "\n"); err == nil {
				err = writeLeaseText(w, v)
			}
		default:
			err = writeLeaseText(w, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shorten cuts s to n runes for a table column.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
