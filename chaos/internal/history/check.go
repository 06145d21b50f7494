package history

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockcoord/lockcoord/coordinator"
)

// Model is the porcupine model of one lease (one resource's history).
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Init: func() []any { return []any{state{}} },
		Step: func(s, in, out any) []any {
			next := step(s.(state), in.(Input), out.(Output))
			res := make([]any, len(next))
			for i, n := range next {
				res[i] = n
			}
			return res
		},
		DescribeOperation: func(in, out any) string {
			return Op{Input: in.(Input), Output: out.(Output)}.String()
		},
		DescribeState: func(s any) string { return s.(state).String() },
	}
	return nm.ToModel()
}

// Result is the check of one resource's history.
type Result struct {
	Resource coordinator.Resource
	Ops      int
	Unknown  int // operations with an unknown outcome
	Outcome  porcupine.CheckResult
	Elapsed  time.Duration
	// Visualization is the path of porcupine's HTML rendering of an
	// illegal history, when it could be written.
	Visualization string
	// Explanation is, for an illegal history, the end of the longest
	// linearization found, the states it leads to, and the operations
	// that could not follow.
	Explanation string
}

// Report is the check of a whole history.
type Report struct {
	Results []Result
}

// OK reports whether every resource's history is linearizable.
func (r Report) OK() bool {
	for _, x := range r.Results {
		if x.Outcome != porcupine.Ok {
			return false
		}
	}
	return true
}

// Ops returns the number of operations checked.
func (r Report) Ops() (ops, unknown int) {
	for _, x := range r.Results {
		ops += x.Ops
		unknown += x.Unknown
	}
	return ops, unknown
}

func (r Report) String() string {
	var b strings.Builder
	for _, x := range r.Results {
		fmt.Fprintf(&b, "%s: %s (%d ops, %d unknown, %v)", x.Resource, x.Outcome, x.Ops, x.Unknown, x.Elapsed.Round(time.Millisecond))
		if x.Visualization != "" {
			fmt.Fprintf(&b, " see %s", x.Visualization)
		}
		b.WriteString("\n")
		b.WriteString(x.Explanation)
	}
	return b.String()
}

// Check checks the history of each resource (its operations and every
// wipe) against the lease model, each within timeout. An illegal history
// is rendered as HTML into dir (when dir is not empty).
func Check(ops, wipes []Op, timeout time.Duration, dir string) Report {
	byRes := map[coordinator.Resource][]porcupine.Operation{}
	unknown := map[coordinator.Resource]int{}
	for _, op := range ops {
		byRes[op.Resource] = append(byRes[op.Resource], operation(op))
		if op.Output.Status == Unknown {
			unknown[op.Resource]++
		}
	}
	resources := make([]coordinator.Resource, 0, len(byRes))
	for r := range byRes {
		resources = append(resources, r)
	}
	slices.SortFunc(resources, func(a, b coordinator.Resource) int { return strings.Compare(a.String(), b.String()) })
	model := Model()
	var rep Report
	for _, r := range resources {
		hist := byRes[r]
		for _, w := range wipes {
			hist = append(hist, operation(w))
		}
		start := time.Now()
		res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
		x := Result{Resource: r, Ops: len(byRes[r]), Unknown: unknown[r], Outcome: res, Elapsed: time.Since(start)}
		if res == porcupine.Illegal {
			x.Explanation = explain(hist, info)
			if dir != "" {
				path := filepath.Join(dir, "history-"+r.Type+"-"+safe(r.ID)+".html")
				if err := porcupine.VisualizePath(model, info, path); err == nil {
					x.Visualization = path
				}
			}
		}
		rep.Results = append(rep.Results, x)
	}
	return rep
}

func operation(op Op) porcupine.Operation {
	call := op.Call.UnixNano()
	ret := int64(never)
	if !op.Return.IsZero() {
		ret = op.Return.UnixNano()
	}
	return porcupine.Operation{ClientId: max(op.Client, 0), Input: op.Input, Output: op.Output, Call: call, Return: ret}
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// TempDir returns a directory for visualizations that outlives the test
// (t.TempDir is removed when the test ends).
func TempDir() string {
	dir, err := os.MkdirTemp("", "lockcoord-history-")
	if err != nil {
		return ""
	}
	return dir
}

// explain describes where the check of an illegal history got stuck.
func explain(hist []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := info.PartialLinearizations()
	if len(parts) == 0 {
		return ""
	}
	var longest []int
	for _, p := range parts[0] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	var b strings.Builder
	states := []state{{}}
	done := map[int]bool{}
	for i, id := range longest {
		op := hist[id]
		var next []state
		for _, s := range states {
			next = append(next, step(s, op.Input.(Input), op.Output.(Output))...)
		}
		states = next
		done[id] = true
		if i >= len(longest)-8 {
			fmt.Fprintf(&b, "  linearized %s\n", describe(op))
		}
	}
	for _, s := range states {
		fmt.Fprintf(&b, "  state: %s\n", s)
	}
	var rest []int
	for id := range hist {
		if !done[id] {
			rest = append(rest, id)
		}
	}
	slices.SortFunc(rest, func(a, b int) int { return int(hist[a].Call - hist[b].Call) })
	for _, id := range rest[:min(len(rest), 6)] {
		fmt.Fprintf(&b, "  next:       %s\n", describe(hist[id]))
	}
	return b.String()
}

func describe(op porcupine.Operation) string {
	in := op.Input.(Input)
	ret := "?"
	if in.RetMs != never {
		ret = fmt.Sprint(in.RetMs % 100000)
	}
	return fmt.Sprintf("[%d..%s] client %d: %s", in.CallMs%100000, ret, op.ClientId,
		Op{Input: in, Output: op.Output.(Output)}.String())
}
