#!/usr/bin/env bash
# hack/ci.sh — what `make ci` (and so .ci/run) runs.
#
# Stages: lint, demo-check, test, bench-smoke, then the coverage gate over the profile
# the test stage wrote (one test run serves both). A failing stage does not
# hide the others: every stage runs, a summary names the failed ones, and
# the output ends with go test's package results, which CI reads. Exits 1
# when any stage failed.
#
# Environment: MAKE (make), TEST_LOG (.cache/test.log), COVER_PROFILE
# (coverage.out), COVER_MIN (97.0).
set -uo pipefail

cd "$(dirname "$0")/.."
make=${MAKE:-make}
test_log=${TEST_LOG:-.cache/test.log}
profile=${COVER_PROFILE:-coverage.out}
min=${COVER_MIN:-97.0}

failed=()
stage() {
	local name=$1
	shift
	local start=$SECONDS
	echo
	echo "==> ci: $name"
	if "$@"; then
		echo "==> ci: $name passed ($((SECONDS - start)) s)"
	else
		echo "==> ci: $name FAILED ($((SECONDS - start)) s)"
		failed+=("$name")
	fi
}

rm -f "$test_log" "$profile"
stage lint "$make" --no-print-directory -k lint
stage demo-check "$make" --no-print-directory demo-check
stage test "$make" --no-print-directory test
stage bench-smoke "$make" --no-print-directory bench-smoke
if [[ -s "$profile" ]]; then
	stage coverage bash hack/cover.sh "$profile" "$min"
else
	echo "==> ci: coverage FAILED: the test stage wrote no $profile"
	failed+=(coverage)
fi

echo
if [[ ${#failed[@]} -eq 0 ]]; then
	echo "ci: passed: lint, demo-check, test, bench-smoke, coverage (>= $min%)"
else
	echo "ci: FAILED: ${failed[*]}"
fi
if [[ -s "$test_log" ]]; then
	echo "ci: go test results:"
	grep -E '^(ok|FAIL|\?|panic:)[[:space:]]' "$test_log" || tail -n 20 "$test_log"
	# go test's own closing line when it failed
	if grep -qE '^FAIL[[:space:]]*$' "$test_log"; then
		echo FAIL
	fi
fi
[[ ${#failed[@]} -eq 0 ]]
