// Package testcluster starts, for tests, a Redis Cluster (masters and
// replicas, joined with redis-cli --cluster create) and a Sentinel group
// (a master, replicas and Sentinels), all child processes on free loopback
// ports, and stops them after. Nodes can be killed, frozen and restarted
// to provoke failovers.
//
// Starting a cluster takes a second or two, so a test package starts one
// in TestMain and shares it; tests use key prefixes of their own:
//
//	var env testcluster.Env
//
//	func TestMain(m *testing.M) {
//		env.Cluster, env.ClusterErr = testcluster.StartCluster(ctx, testcluster.ClusterConfig{})
//		code := m.Run()
//		env.Close()
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) {
//		c := env.NeedCluster(t) // skips, or fails under CI, when Redis is missing
//		...
//	}
package testcluster
