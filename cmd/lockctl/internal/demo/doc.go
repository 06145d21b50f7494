// Package demo runs lockctl's demo, the showcase of the project/plan
// hierarchy: workers drive plans through their lifecycle (draft, queued,
// running, completed), each transition holding the plan's project shared,
// capped at Config.PlansPerProject owners (coordinator.Permits), and the
// plan exclusive, in one coordinator.HoldAll; now and then a worker runs a
// project-wide job holding the project exclusive, waiting its turn in the
// store's fair queue. A scheduler elected among them (coordinator.Lead:
// only the leader assigns subplans, each assignment fenced by its term)
// and a shared in-memory plan store that checks fencing tokens and
// rejects stale writes complete the picture. It counts what the
// coordinator did and checks the invariants a lock service promises:
// never two holders in a critical section, fencing tokens strictly
// increasing per resource (an exclusive hold's above every earlier hold's,
// a shared one's above every earlier exclusive one's), no lease left
// behind, plan transitions in order (no lost update), never an exclusive
// project holder while a plan of that project is held, and never more
// holders of a project than its permits.
//
// With Chaos, workers freeze (their store calls and their work stop, as a
// process paused by the scheduler or a long GC would) for longer than the
// TTL, then finish the write they had in flight: the plan store rejects it
// when a newer holder has been there, which is what fencing is for. A
// leader frozen so loses its term: another worker is elected, and the
// old leader's assignment is refused by the new term.
package demo
