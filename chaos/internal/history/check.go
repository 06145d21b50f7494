package history

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockcoord/lockcoord/coordinator"
)

// stateSet is the set of states the lease can be in, sorted by key.
type stateSet struct {
	states []state
	hash   uint64
}

func newSet(states []state) *stateSet {
	states = dedupe(states)
	slices.SortFunc(states, compareStates)
	h := fnv.New64a()
	for _, s := range states {
		s.hash(h)
	}
	return &stateSet{states: states, hash: h.Sum64()}
}

// Model is the porcupine model of one resource's history: a set of lease
// states (the model is nondeterministic: an operation of unknown outcome
// may or may not take effect). hist is the history to check, whose
// operations of unknown outcome carry their index as Input.Seq.
func Model(hist []porcupine.Operation) porcupine.Model {
	var unknown []Input
	for _, op := range hist {
		if in := op.Input.(Input); op.Output.(Output).Status == Unknown {
			unknown = append(unknown, in)
		}
	}
	m := newModel(unknown)
	return porcupine.Model{
		Init: func() any { return newSet([]state{{}}) },
		Step: func(s, in, out any) (bool, any) {
			var next []state
			for _, x := range s.(*stateSet).states {
				next = append(next, m.step(x, in.(Input), out.(Output))...)
			}
			if len(next) == 0 {
				return false, nil
			}
			return true, newSet(next)
		},
		Equal: func(a, b any) bool {
			x, y := a.(*stateSet), b.(*stateSet)
			return x.hash == y.hash && slices.Equal(x.states, y.states)
		},
		Hash: func(s any) uint64 { return s.(*stateSet).hash },
		DescribeOperation: func(in, out any) string {
			return Op{Input: in.(Input), Output: out.(Output)}.String()
		},
		DescribeState: func(s any) string {
			var parts []string
			for _, x := range s.(*stateSet).states {
				parts = append(parts, x.String())
			}
			return "{" + strings.Join(parts, "; ") + "}"
		},
	}
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
	// Dump is the path of the resource's history as JSON (see Load),
	// written when the check did not pass.
	Dump string
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
		if x.Dump != "" {
			fmt.Fprintf(&b, " history in %s", x.Dump)
		}
		b.WriteString("\n")
		b.WriteString(x.Explanation)
	}
	return b.String()
}

// Options tune Check.
type Options struct {
	// Timeout bounds the check of each resource's history (zero: none);
	// a check that runs out is reported as porcupine.Unknown.
	Timeout time.Duration
	// MaxDelay bounds how long after its call an operation of unknown
	// outcome can still be applied: how long its request can wait in
	// the network, a paused Redis or a client's retries. Zero: forever,
	// which costs the checker time exponential in the number of such
	// operations that overlap.
	MaxDelay time.Duration
	// Dir receives porcupine's HTML rendering of an illegal history
	// (none when empty).
	Dir string
}

// Check checks the history of each resource (its operations and every
// wipe) against the lease model.
func Check(ops, wipes []Op, opts Options) Report {
	timeout, dir := opts.Timeout, opts.Dir
	byRes := map[coordinator.Resource][]porcupine.Operation{}
	unknown := map[coordinator.Resource]int{}
	for _, op := range ops {
		byRes[op.Resource] = append(byRes[op.Resource], operation(op, opts.MaxDelay))
		if op.Output.Status == Unknown {
			unknown[op.Resource]++
		}
	}
	resources := make([]coordinator.Resource, 0, len(byRes))
	for r := range byRes {
		resources = append(resources, r)
	}
	slices.SortFunc(resources, func(a, b coordinator.Resource) int { return strings.Compare(a.String(), b.String()) })
	var rep Report
	for _, r := range resources {
		hist := byRes[r]
		for _, w := range wipes {
			hist = append(hist, operation(w, 0))
		}
		for i := range hist {
			if hist[i].Output.(Output).Status == Unknown {
				in := hist[i].Input.(Input)
				in.Seq = int32(i)
				hist[i].Input = in
			}
		}
		model := Model(hist)
		start := time.Now()
		res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
		x := Result{Resource: r, Ops: len(byRes[r]), Unknown: unknown[r], Outcome: res, Elapsed: time.Since(start)}
		if res != porcupine.Ok && dir != "" {
			x.Dump = filepath.Join(dir, "history-"+r.Type+"-"+safe(r.ID)+".json")
			if err := dump(x.Dump, hist); err != nil {
				x.Dump = ""
			}
		}
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

func operation(op Op, maxDelay time.Duration) porcupine.Operation {
	call := op.Call.UnixNano()
	in := op.Input
	var ret int64
	if !op.Return.IsZero() {
		ret = op.Return.UnixNano()
	} else {
		// unknown outcome: the operation is linearized at its call, and its
		// effect, if any, is pending in the model's state until it may
		// take effect, within maxDelay of its call (or ever)
		ret = call + 1
		if maxDelay > 0 {
			in.RetMs = in.CallMs + maxDelay.Milliseconds()
		}
	}
	return porcupine.Operation{ClientId: max(op.Client, 0), Input: in, Output: op.Output, Call: call, Return: ret}
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
	m := Model(hist)
	set := m.Init()
	done := map[int]bool{}
	for i, id := range longest {
		op := hist[id]
		_, set = m.Step(set, op.Input, op.Output)
		if set == nil {
			break
		}
		done[id] = true
		if i >= len(longest)-8 {
			fmt.Fprintf(&b, "  linearized %s\n", describe(op))
		}
	}
	if set != nil {
		for _, s := range set.(*stateSet).states {
			fmt.Fprintf(&b, "  state: %s\n", s)
		}
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

// dumped is one operation of a dumped history.
type dumped struct {
	Client       int
	Call, Return int64
	Input        Input
	Output       Output
}

func dump(path string, hist []porcupine.Operation) error {
	out := make([]dumped, len(hist))
	for i, op := range hist {
		out[i] = dumped{op.ClientId, op.Call, op.Return, op.Input.(Input), op.Output.(Output)}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// CheckDump checks a history written by Check (for a history that did not
// pass, to study it apart from the test that recorded it).
func CheckDump(path string, timeout time.Duration) (porcupine.CheckResult, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var in []dumped
	if err := json.Unmarshal(b, &in); err != nil {
		return "", "", err
	}
	hist := make([]porcupine.Operation, len(in))
	for i, d := range in {
		hist[i] = porcupine.Operation{ClientId: d.Client, Call: d.Call, Return: d.Return, Input: d.Input, Output: d.Output}
	}
	res, info := porcupine.CheckOperationsVerbose(Model(hist), hist, timeout)
	expl := ""
	if res == porcupine.Illegal {
		expl = explain(hist, info)
	}
	return res, expl, nil
}
