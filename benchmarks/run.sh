#!/usr/bin/env bash
# benchmarks/run.sh — the lockcoord benchmark suite (issues 6, 14 and 15).
#
#   bash benchmarks/run.sh [full] [--force]
#                                   full run (make bench): every case, 6 rounds,
#                                   about 12 minutes on 2 CPUs; writes results/latest.txt
#                                   (raw go test output), results/benchstat.txt and
#                                   results/load.txt, and rewrites the tables of
#                                   docs/benchmarks.md unless the load gate (below) refuses
#   bash benchmarks/run.sh smoke    CI's short form: every case, -benchtime=100x
#                                   (issue 14's failover and expiry cases: 1x),
#                                   1,000 leases instead of 100,000, one run; checks
#                                   that the benchmarks compile and work, writes
#                                   nothing, asserts no timing. Then the benchmark
#                                   bar (TestBenchBar): lockcoord against the floor
#                                   in 5 alternating short runs, one "bench-bar:" line
#                                   per configuration; it fails on errors, never on a figure
#
# The load gate: a table measured beside other work is noise, so a full run
# publishes only when the machine was quiet. cmd/benchload snapshots the
# CPU counters before the first round and after the last: /proc/stat's busy
# time of every CPU, and this script's own CPU time with that of every
# descendant it waited for (/proc/$$/stat utime, stime, cutime, cstime: the
# test binary, the redis-server it starts, tee). The machine's busy time
# beyond the benchmark's, over the run's length, is the load outside the
# benchmark in CPUs. Above BENCH_MAX_OTHER_LOAD (default 0.25 CPU) the run
# still writes results/, but not docs/benchmarks.md: it says why and exits
# 3. FORCE=1 (FORCE=1 make bench) or --force publishes anyway, and the
# report's load line says so. The load line states the outside load and
# the busiest other processes either way.
#
# The benchmarks start their own throwaway redis-server on a free loopback
# port; the audit case needs Postgres (hack/services.sh makes sure it runs;
# LOCKCOORD_BENCH_DATABASE_URL overrides the admin URL; the case creates
# and drops a database of its own). Environment: COUNT (6), GO (go),
# BENCH_MAX_OTHER_LOAD (0.25), FORCE.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
GO=${GO:-go}
count=${COUNT:-6}
max_other=${BENCH_MAX_OTHER_LOAD:-0.25}
force=${FORCE:-}
if [[ $force == 0 ]]; then
	force=
fi

mode=full
for arg in "$@"; do
	case "$arg" in
	full | smoke) mode=$arg ;;
	--force) force=1 ;;
	*)
		echo "usage: $0 [full|smoke] [--force]" >&2
		exit 2
		;;
	esac
done

bash "$root/hack/services.sh"

cd "$here"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin="$tmp/benchmarks.test"
$GO test -c -o "$bin" .
benchload="$tmp/benchload"
$GO build -o "$benchload" ./cmd/benchload

# run BENCH-REGEXP [go test flags...]: one invocation of the compiled suite
out="$tmp/bench.txt"
run() {
	local pattern=$1
	shift
	echo "run.sh: -bench '$pattern' $*" >&2
	"$bin" -test.run '^$' -test.bench "$pattern" "$@" | tee -a "$out"
}

# issue 14's cases wait for leases to expire: ops of 0.2 to 1 s
slow='^Benchmark(Failover|ExpiryEvent)$'

if [[ $mode == smoke ]]; then
	# every benchmark once, small; run.sh exits non-zero if any fails
	LOCKCOORD_REQUIRE_SERVICES=1 run . -test.skip "$slow" -test.benchtime 100x -leases 1000
	LOCKCOORD_REQUIRE_SERVICES=1 run "$slow" -test.benchtime 1x
	$GO run ./cmd/benchtable "$out" >/dev/null
	# the benchmark bar: prints the ratios, fails only on errors
	LOCKCOORD_REQUIRE_SERVICES=1 "$bin" -test.run '^TestBenchBar$' -bar 5
	echo "run.sh: smoke run passed"
	exit 0
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
# the load gate's first snapshot: nothing of this script runs but benchload
"$benchload" snapshot -pid $$ "$tmp/load0"
# $count rounds, each running every library once, rather than -count: a
# change of the machine's load then hits every library alike
for round in $(seq "$count"); do
	echo "run.sh: round $round of $count" >&2
	# fast cases: ~100 µs per op (NetPairs ~1.3 ms), 0.3 s per run is
	# hundreds to thousands of ops
	run '^Benchmark(Floor|Pairs|NetPairs|Reentrant|Renew|Scripts|Modes|SharedOneKey|Multi)$' -test.benchtime 0.3s
	# waiting cases: ops of milliseconds (pollers: of 100 ms)
	run '^Benchmark(Contention|Handoff)$' -test.benchtime 0.8s
	# the audit mirror, a backlog per run
	run '^BenchmarkMirrorDrain$' -test.benchtime 20000x
done
# issue 14: failovers and expiry events, one run of many ops (~50 s)
run '^BenchmarkFailover$' -test.count 1 -test.benchtime 16x
run '^BenchmarkExpiryEvent$' -test.count 1 -test.benchtime 40x
# 100,000 leases per case: memory figures do not vary, one run
run '^Benchmark(Memory|List)$' -test.count 1 -test.benchtime 1s
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
took=$(($(date +%s) - started))
# the load gate's verdict: 0 quiet enough, 3 too busy
gate=0
outside=$("$benchload" check -pid $$ -max "$max_other" "$tmp/load0") || gate=$?
if ((gate != 0 && gate != 3)); then
	echo "run.sh: benchload check failed (status $gate)" >&2
	exit 1
fi

mkdir -p results
cp "$out" results/latest.txt
$GO tool benchstat -col /lib results/latest.txt >results/benchstat.txt || true
load="1/5/15-minute load average ${load_start} at the start, ${load_end} at the end (the machine has $(nproc) CPUs); the run took ${took} s; ${outside}"
if ((gate == 3)) && [[ -n $force ]]; then
	load="$load; that is above the limit of ${max_other} CPU (BENCH_MAX_OTHER_LOAD): published by force"
elif ((gate == 3)); then
	load="$load; that is above the limit of ${max_other} CPU (BENCH_MAX_OTHER_LOAD): not published"
fi
echo "$load" >results/load.txt
if ((gate == 3)) && [[ -z $force ]]; then
	echo "run.sh: wrote benchmarks/results/ but NOT docs/benchmarks.md: the machine was busy outside the benchmark" >&2
	echo "run.sh: ${outside}" >&2
	echo "run.sh: the limit is BENCH_MAX_OTHER_LOAD=${max_other} CPU; run it again on a quiet machine, or publish anyway with FORCE=1 make bench" >&2
	exit 3
fi
$GO run ./cmd/benchtable -o "$root/docs/benchmarks.md" -load "$load" \
	-command "make bench (benchmarks/run.sh: $count rounds of every case)" results/latest.txt
echo "run.sh: wrote benchmarks/results/latest.txt, benchstat.txt, load.txt and docs/benchmarks.md in ${took} s"
