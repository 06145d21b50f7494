// Package cluster tests lockcoord on a real Redis Cluster (three masters,
// three replicas) and a Sentinel group (a master, a replica, three
// Sentinels), started once for the package by internal/testcluster on
// loopback ports: the store conformance suite, slot layout, sharded
// release notifications, failovers under load, and WithReplicaAck.
//
// It holds tests and benchmarks only:
//
//	go test -race ./cluster/
//	go test -run '^$' -bench . ./cluster/
//
// Without redis-server and redis-cli the tests skip; under CI=true or
// LOCKCOORD_REQUIRE_SERVICES=1 they fail.
package cluster
