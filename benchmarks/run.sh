#!/usr/bin/env bash
# benchmarks/run.sh — the lockcoord benchmark suite (issue 6).
#
#   bash benchmarks/run.sh          full run (make bench): every case, 6 rounds,
#                                   about 11 minutes on 2 busy CPUs; writes results/latest.txt
#                                   (raw go test output), results/benchstat.txt
#                                   and rewrites the tables of docs/benchmarks.md
#   bash benchmarks/run.sh smoke    CI's short form: every case, -benchtime=100x
#                                   (issue 14's failover and expiry cases: 1x),
#                                   1,000 leases instead of 100,000, one run; checks
#                                   that the benchmarks compile and work, writes
#                                   nothing, asserts no timing
#
# The benchmarks start their own throwaway redis-server on a free loopback
# port; the audit case needs Postgres (hack/services.sh makes sure it runs;
# LOCKCOORD_BENCH_DATABASE_URL overrides the admin URL; the case creates
# and drops a database of its own). Environment: COUNT (6), GO (go).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mode=${1:-full}
GO=${GO:-go}
count=${COUNT:-6}

case "$mode" in
full | smoke) ;;
*)
	echo "usage: $0 [full|smoke]" >&2
	exit 2
	;;
esac

bash "$root/hack/services.sh"

cd "$here"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin="$tmp/benchmarks.test"
$GO test -c -o "$bin" .

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
	echo "run.sh: smoke run passed"
	exit 0
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
# $count rounds, each running every library once, rather than -count: a
# change of the machine's load then hits every library alike
for round in $(seq "$count"); do
	echo "run.sh: round $round of $count" >&2
	# fast cases: ~100 µs per op, 0.3 s per run is thousands of ops
	run '^Benchmark(Floor|Pairs|Reentrant|Renew|Scripts|Modes|SharedOneKey|Multi)$' -test.benchtime 0.3s
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

mkdir -p results
cp "$out" results/latest.txt
$GO tool benchstat -col /lib results/latest.txt >results/benchstat.txt || true
# what else was busy as the run ended (top's second sample: current CPU use)
others=$(top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 && $12 != "top" {printf "%s%s %s%%", sep, $12, $9; sep = ", "}' | head -c 300)
load="1/5/15-minute load average ${load_start} at the start, ${load_end} at the end (the machine has $(nproc) CPUs); the run took ${took} s"
if [[ -n $others ]]; then
	load="$load; busy at the end besides the benchmark: $others (% of one CPU)"
fi
$GO run ./cmd/benchtable -o "$root/docs/benchmarks.md" -load "$load" \
	-command "make bench (benchmarks/run.sh: $count rounds of every case)" results/latest.txt
echo "run.sh: wrote benchmarks/results/latest.txt, benchmarks/results/benchstat.txt and docs/benchmarks.md in ${took} s"
