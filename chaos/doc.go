// Package chaos holds the safety tests of lockcoord (issue 7): the lock
// under faults — a TCP fault proxy between the workers and a real
// redis-server (delay, drop, blackhole, cut), kill -9 and restart of that
// server with and without appendonly, CLIENT PAUSE, and workers paused
// past their lease — checked three ways: a fenced resource that accepts a
// write only with a token above the last (UPDATE ... WHERE last_token <
// $token, in memory or in Postgres) and counts overlapping holds and
// stale writes; the recorded history of every store operation, checked
// with porcupine against a sequential model of a lease; and the Postgres
// ledger of pgaudit for the fencing tokens. An election (issue 14: Lead
// and Observe) runs through the same faults, checked for terms that
// rise, fencing of deposed leaders, and observers that miss no term
// outside a gap they were told of.
//
// The package has no code outside its tests. go test ./chaos/ runs every
// scenario at a short size (well under a minute); the full size, whose
// figures docs/reliability.md reports, runs with
//
//	go test -count=1 -timeout 60m -v ./chaos/ -chaos.full
//
// or LOCKCOORD_CHAOS=full in the environment. With -chaos.autopipeline
// (or LOCKCOORD_CHAOS_AUTOPIPELINE=1) the scenarios' stores are made with
// redisstore.WithAutoPipeline, the configuration the README recommends
// for many goroutines. The tests need redis-server
// on the PATH and, for the ledger and the Postgres row, the Postgres named
// by LOCKCOORD_TEST_DATABASE_URL; they skip what is missing (fail under
// CI=true).
package chaos
