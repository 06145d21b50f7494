// Package cluster tests lockcoord on a real Redis Cluster (three masters,
// three replicas) and a Sentinel group (a master, a replica, three
// Sentinels), started once for the package by internal/testcluster on
// loopback ports: the store conformance suite, slot layout, every
// operation across the masters, sharded release notifications, the audit
// mirror (pgaudit, on a Postgres database of each test's own), failovers
// under load with the mirror following, and WithReplicaAck. The godog
// scenarios run on a Cluster in features/ (TestFeaturesOnCluster), lockctl
// on both in cmd/lockctl (TestClusterAndSentinelURLs).
//
// It holds tests and benchmarks only:
//
//	go test -race ./cluster/
//	go test -run '^$' -bench . ./cluster/
//
// Without redis-server and redis-cli (or Postgres, for the mirror) the
// tests skip; under CI=true or LOCKCOORD_REQUIRE_SERVICES=1 they fail.
// testing.Short leaves out only the killed Cluster master, which waits out
// cluster-node-timeout.
package cluster
