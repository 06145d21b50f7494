// Package demo runs lockctl's demo: workers that drive plans through their
// lifecycle (draft, queued, running, completed) under plan leases taken
// with coordinator.Hold, a scheduler elected among them (coordinator.Lead:
// only the leader assigns subplans, each assignment fenced by its term),
// and a shared in-memory plan store that checks fencing tokens and
// rejects stale writes. It counts what the coordinator did and checks the
// invariants a lock service promises: never two holders in a critical
// section, fencing tokens strictly increasing per resource, no lease left
// behind, and plan transitions in order (no lost update).
//
// With Chaos, workers freeze (their store calls and their work stop, as a
// process paused by the scheduler or a long GC would) for longer than the
// TTL, then finish the write they had in flight: the plan store rejects it
// when a newer holder has been there, which is what fencing is for. A
// leader frozen so loses its term: another worker is elected, and the
// old leader's assignment is refused by the new term.
package demo
