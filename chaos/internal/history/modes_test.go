package history

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockcoord/lockcoord/coordinator"
)

const (
	excl = coordinator.ModeExclusive
	shrd = coordinator.ModeShared
)

// asking returns op asking for mode with cap permits.
func asking(op Op, mode coordinator.Mode, permits int) Op {
	op.Input.Mode, op.Input.Permits = mode, permits
	return op
}

// got returns op reporting mode and cap permits (the lease's, or the
// blocking holder's).
func got(op Op, mode coordinator.Mode, permits int) Op {
	op.Output.Mode, op.Output.Permits = mode, permits
	return op
}

// sacq is a shared acquire with cap permits that got a shared lease under
// that cap.
func sacq(owner string, call, ret int64, count int, token uint64, at int64, permits int) Op {
	return got(asking(acq(owner, call, ret, count, token, at), shrd, permits), shrd, permits)
}

// sconflict is a shared acquire refused by a shared holder under cap
// permits, holders owners holding.
func sconflict(owner, holder string, call, ret int64, token uint64, exp int64, permits, holders int) Op {
	op := got(asking(conflict(owner, holder, call, ret, 1, token, exp), shrd, permits), shrd, permits)
	op.Output.Holders = holders
	return op
}

// holding sets the number of holders a conflict reports, and whether it
// refused an upgrade.
func holding(op Op, holders int, upgrade bool) Op {
	op.Output.Holders, op.Output.Upgrade = holders, upgrade
	return op
}

// queued sets how many waiters a conflict says were queued ahead.
func queued(op Op, n int) Op {
	op.Output.Queued = n
	return op
}

// modeCase is a pair of histories that differ in one point: the legal one
// passes, the illegal one breaks the rule and must be rejected.
type modeCase struct {
	rule         string
	legal, wrong []Op
}

func modeCases() []modeCase {
	return []modeCase{
		{"an exclusive hold never beside a shared one", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			rel("a", 20, 22, 0, 10),
			acq("b", 50, 52, 1, 11, 51),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			acq("b", 50, 52, 1, 11, 51),
		}},
		{"a shared hold never beside an exclusive one", []Op{
			acq("a", 0, 2, 1, 10, 1),
			sacq("b", 150, 152, 1, 11, 151, 0),
		}, []Op{
			acq("a", 0, 2, 1, 10, 1),
			sacq("b", 50, 52, 1, 11, 51, 0),
		}},
		{"shared holders share", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 11, 11, 0),
			sacq("c", 20, 22, 1, 12, 21, 0),
			rel("b", 30, 32, 0, 11),
			holding(got(conflict("d", "a", 40, 42, 1, 10, 101), shrd, 0), 2, false),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 11, 11, 0),
			sacq("c", 20, 22, 1, 12, 21, 0),
			rel("b", 30, 32, 0, 11),
			holding(got(conflict("d", "a", 40, 42, 1, 10, 101), shrd, 0), 3, false),
		}},
		{"never more holders than the cap", []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			sacq("b", 10, 12, 1, 11, 11, 2),
			sconflict("c", "a", 20, 22, 10, 101, 2, 2),
			rel("a", 30, 32, 0, 10),
			sacq("c", 40, 42, 1, 12, 41, 2),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			sacq("b", 10, 12, 1, 11, 11, 2),
			sacq("c", 20, 22, 1, 12, 21, 2),
		}},
		{"a joiner without Permits counts against the recorded cap", []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			got(sacq("b", 10, 12, 1, 11, 11, 0), shrd, 2),
			sconflict("c", "a", 20, 22, 10, 101, 0, 2),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			got(sacq("b", 10, 12, 1, 11, 11, 0), shrd, 2),
			got(sacq("c", 20, 22, 1, 12, 21, 0), shrd, 2),
		}},
		{"a joiner reports the recorded cap", []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			got(sacq("b", 10, 12, 1, 11, 11, 0), shrd, 2),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			sacq("b", 10, 12, 1, 11, 11, 0),
		}},
		{"a cap conflict only at the cap", []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			sacq("b", 10, 12, 1, 11, 11, 2),
			sconflict("c", "a", 20, 22, 10, 101, 2, 2),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 3),
			sacq("b", 10, 12, 1, 11, 11, 3),
			sconflict("c", "a", 20, 22, 10, 101, 3, 2),
		}},
		{"shared holders without a cap never refuse a shared request", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			got(conflict("b", "a", 10, 12, 1, 10, 101), shrd, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			asking(got(conflict("b", "a", 10, 12, 1, 10, 101), shrd, 0), shrd, 0),
		}},
		{"every holder expires on its own", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			got(conflict("c", "b", 120, 122, 1, 11, 151), shrd, 0),
			acq("c", 160, 162, 1, 12, 161),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			got(conflict("c", "a", 120, 122, 1, 10, 101), shrd, 0),
		}},
		{"every holder renews its own hold", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 11, 11, 0),
			got(renewOK("a", 60, 62, 1, 10, 61), shrd, 0),
			got(conflict("c", "a", 140, 142, 1, 10, 161), shrd, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 11, 11, 0),
			got(renewOK("a", 60, 62, 1, 10, 61), shrd, 0),
			got(conflict("c", "b", 140, 142, 1, 11, 161), shrd, 0),
		}},
		{"tokens go up across modes", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			rel("a", 20, 22, 0, 10),
			rel("b", 24, 26, 0, 11),
			acq("c", 30, 32, 1, 12, 31),
			rel("c", 40, 42, 0, 12),
			sacq("d", 50, 52, 1, 13, 51, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			rel("a", 20, 22, 0, 10),
			rel("b", 24, 26, 0, 11),
			acq("c", 30, 32, 1, 11, 31),
		}},
		{"a reader's token goes above the writer's", []Op{
			acq("a", 0, 2, 1, 10, 1),
			rel("a", 20, 22, 0, 10),
			sacq("b", 30, 32, 1, 11, 31, 0),
		}, []Op{
			acq("a", 0, 2, 1, 10, 1),
			rel("a", 20, 22, 0, 10),
			sacq("b", 30, 32, 1, 10, 31, 0),
		}},
		{"a joiner's token goes above the holders'", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 11, 11, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 10, 12, 1, 9, 11, 0),
		}},
		{"re-entry per owner", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			sacq("a", 10, 12, 2, 10, 1, 0),
			sacq("b", 14, 16, 2, 11, 6, 0),
			rel("a", 20, 22, 1, 10),
			rel("a", 24, 26, 0, 10),
			rel("b", 30, 32, 1, 11),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			sacq("a", 10, 12, 2, 10, 1, 0),
			sacq("b", 14, 16, 3, 11, 6, 0),
		}},
		{"a shared re-entry keeps its token", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("a", 10, 12, 2, 10, 1, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("a", 10, 12, 2, 11, 1, 0),
		}},
		{"an exclusive holder asking shared re-enters, exclusive", []Op{
			acq("a", 0, 2, 1, 10, 1),
			asking(acq("a", 10, 12, 2, 10, 1), shrd, 0),
		}, []Op{
			acq("a", 0, 2, 1, 10, 1),
			asking(got(acq("a", 10, 12, 2, 10, 1), shrd, 0), shrd, 0),
		}},
		{"the sole shared holder upgrades with a new token", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			acq("a", 10, 12, 2, 11, 11),
			got(conflict("b", "a", 20, 22, 2, 11, 111), excl, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			acq("a", 10, 12, 2, 10, 1),
		}},
		{"an upgraded holder is exclusive", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			acq("a", 10, 12, 2, 11, 11),
			asking(got(conflict("b", "a", 20, 22, 2, 11, 111), excl, 0), shrd, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			acq("a", 10, 12, 2, 11, 11),
			sacq("b", 20, 22, 1, 12, 21, 0),
		}},
		{"no upgrade beside another shared holder", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			holding(got(conflict("a", "b", 10, 12, 1, 11, 106), shrd, 0), 2, true),
			rel("b", 20, 22, 0, 11),
			acq("a", 30, 32, 2, 12, 31),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			acq("a", 10, 12, 2, 12, 1),
		}},
		{"an upgrade conflict needs the caller's shared hold", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			holding(got(conflict("a", "b", 10, 12, 1, 11, 106), shrd, 0), 2, true),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			rel("a", 8, 9, 0, 10),
			holding(got(conflict("a", "b", 10, 12, 1, 11, 106), shrd, 0), 2, true),
		}},
		{"an unknown shared acquire may join", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			asking(mk(Acquire, "b", 10, -1, Output{}), shrd, 0),
			got(conflict("c", "b", 30, 32, 1, 11, 110), shrd, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			mk(Acquire, "b", 10, -1, Output{}),
			got(conflict("c", "b", 30, 32, 1, 11, 110), shrd, 0),
		}},
		{"an unknown shared acquire joins under the cap only", []Op{
			sacq("a", 0, 2, 1, 10, 1, 2),
			asking(mk(Acquire, "b", 10, -1, Output{}), shrd, 2),
			sconflict("c", "a", 30, 32, 10, 101, 2, 2),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 1),
			asking(mk(Acquire, "b", 10, -1, Output{}), shrd, 1),
			got(conflict("c", "b", 30, 32, 1, 11, 110), shrd, 1),
		}},
		{"an unknown upgrade takes a new token", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			mk(Acquire, "a", 10, -1, Output{}),
			got(conflict("b", "a", 30, 32, 2, 11, 110), excl, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			mk(Acquire, "a", 10, -1, Output{}),
			got(conflict("b", "a", 30, 32, 2, 10, 110), excl, 0),
		}},
		{"a release of one reader leaves the others", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			rel("a", 10, 12, 0, 10),
			got(conflict("c", "b", 20, 22, 1, 11, 106), shrd, 0),
			mk(Release, "a", 30, 32, Output{Status: NotHeld, Holder: "b"}),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 5, 7, 1, 11, 6, 0),
			rel("a", 10, 12, 0, 10),
			mk(Release, "b", 20, 22, Output{Status: Free}),
		}},
		{"not held while the caller's own hold lives", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			mk(Renew, "a", 120, 122, Output{Status: NotHeld, Holder: "b"}),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			mk(Renew, "a", 60, 62, Output{Status: NotHeld, Holder: "b"}),
		}},
		{"a request refused for the waiters queued ahead", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			queued(asking(got(conflict("b", "a", 10, 12, 1, 10, 101), shrd, 0), shrd, 0), 1),
			rel("a", 20, 22, 0, 10),
			queued(asking(got(conflict("b", "", 30, 32, 0, 0, 0), excl, 0), shrd, 0), 1),
			sacq("c", 40, 42, 1, 11, 41, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			asking(got(conflict("b", "a", 10, 12, 1, 10, 101), shrd, 0), shrd, 0),
		}},
		{"inspect reports a live holder in its mode", []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			got(mk(Inspect, "", 120, 122, Output{Status: OK, Holder: "b", Count: 1, Token: 11, ExpiresAt: base + 151}), shrd, 0),
		}, []Op{
			sacq("a", 0, 2, 1, 10, 1, 0),
			sacq("b", 50, 52, 1, 11, 51, 0),
			mk(Inspect, "", 120, 122, Output{Status: OK, Holder: "b", Count: 1, Token: 11, ExpiresAt: base + 151}),
		}},
	}
}

// TestModelModes checks the rules of shared and counted holds: each legal
// history passes, and its illegal twin, which breaks the rule, is
// rejected.
func TestModelModes(t *testing.T) {
	for _, tc := range modeCases() {
		t.Run(tc.rule, func(t *testing.T) {
			for _, h := range []struct {
				ops  []Op
				want porcupine.CheckResult
			}{{tc.legal, porcupine.Ok}, {tc.wrong, porcupine.Illegal}} {
				rep := Check(h.ops, nil, Options{Timeout: 10 * time.Second, MaxDelay: time.Second})
				if len(rep.Results) != 1 {
					t.Fatalf("%d results", len(rep.Results))
				}
				if got := rep.Results[0].Outcome; got != h.want {
					t.Errorf("check = %s, want %s\n%s", got, h.want, rep)
				}
			}
		})
	}
}
