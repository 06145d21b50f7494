#!/usr/bin/env bash
# hack/cover.sh PROFILE MIN — the coverage gate.
#
# Reads a coverage profile written by `go test -coverpkg=... -coverprofile`
# over several test binaries (the same block appears once per binary; a
# block counts as covered when any binary ran it), prints the percentage of
# statements covered per package and in total, and exits 1 when the total is
# under MIN percent.
#
# Test-support packages are not part of the denominator: */storetest
# (the exported conformance suite) and anything under internal/ but
# internal/scripts (the Lua scripts of redisstore, library code).
set -euo pipefail

profile=${1:-coverage.out}
min=${2:-97.0}

if [[ ! -s "$profile" ]]; then
	echo "cover: no coverage profile $profile: run make test (it writes it) first" >&2
	exit 1
fi

awk -v min="$min" '
NR == 1 && /^mode:/ { next }
{
	# github.com/x/y/pkg/file.go:12.34,15.2 3 1
	split($1, loc, ":")
	file = loc[1]
	if (file ~ /\/storetest\// || (file ~ /\/internal\// && file !~ /\/internal\/scripts\//)) next
	key = $1
	stmts[key] = $2
	if ($3 > 0) hit[key] = 1
	pkg = file
	sub(/\/[^\/]*$/, "", pkg)
	pkgof[key] = pkg
}
END {
	for (k in stmts) {
		p = pkgof[k]
		total[p] += stmts[k]; all += stmts[k]
		if (k in hit) { covered[p] += stmts[k]; cov += stmts[k] }
	}
	n = 0
	for (p in total) names[++n] = p
	# sort package names (insertion sort: a handful of packages)
	for (i = 2; i <= n; i++) {
		v = names[i]
		for (j = i - 1; j > 0 && names[j] > v; j--) names[j + 1] = names[j]
		names[j + 1] = v
	}
	printf "coverage of statements (%s):\n", FILENAME
	for (i = 1; i <= n; i++) {
		p = names[i]
		printf "  %-50s %6.1f%%  (%d/%d)\n", p, 100 * covered[p] / total[p], covered[p], total[p]
	}
	if (all == 0) {
		print "cover: FAIL: the profile covers no statements of the gated packages"
		exit 1
	}
	pct = 100 * cov / all
	printf "  %-50s %6.1f%%  (%d/%d)\n", "total", pct, cov, all
	if (pct < min + 0) {
		printf "cover: FAIL: total coverage %.2f%% is under the %.1f%% gate\n", pct, min
		exit 1
	}
	printf "cover: ok: total coverage %.1f%% >= %.1f%%\n", pct, min
}
' "$profile"
