#!/usr/bin/env bash
# hack/readme-check.sh — compile the README's usage example.
#
# Takes the first ```go block of README.md, writes it as main.go of a
# throwaway module that uses this checkout (replace directive, the repo's
# go.sum) and runs `go vet` on it, so the README cannot drift from the API.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
readme=$root/README.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

awk '/^```go[[:space:]]*$/ { on = 1; next } on && /^```/ { exit } on { print }' "$readme" >"$tmp/main.go"
if [[ ! -s "$tmp/main.go" ]]; then
	echo "readme-check: no \`\`\`go block in $readme" >&2
	exit 1
fi
module=$(cd "$root" && go list -m)
goversion=$(cd "$root" && go list -m -f '{{.GoVersion}}')
cat >"$tmp/go.mod" <<EOF
module readmecheck

go $goversion

require $module v0.0.0

replace $module => $root
EOF
cp "$root/go.sum" "$tmp/go.sum"
cd "$tmp"
# -mod=mod: resolve the example's imports from the repo's requirements
# (all in the module cache and go.sum already) without editing the repo.
if ! out=$(GOFLAGS=-mod=mod go vet . 2>&1); then
	echo "readme-check: the usage example in README.md does not compile:" >&2
	echo "$out" | sed -e "s|$tmp/|./|g" -e "s|\./main\.go|README.md go block|g" >&2
	exit 1
fi
echo "readme-check: README.md usage example compiles"

# Every package of the module (and the benchmarks module) has its room in
# the README's "Repository layout": its directory or a parent of it is
# named there, in backquotes.
layout=$(awk '/^## Repository layout/ { on = 1; next } on && /^## / { exit } on { print }' "$readme")
if [[ -z "$layout" ]]; then
	echo "readme-check: README.md has no \"## Repository layout\" section" >&2
	exit 1
fi
missing=()
while read -r dir; do
	rel=${dir#"$root"/}
	found=
	p=$rel
	while [[ -n "$p" ]]; do
		if grep -qF "\`$p\`" <<<"$layout" || grep -qF "\`$p/\`" <<<"$layout"; then
			found=1
			break
		fi
		[[ "$p" == */* ]] || break
		p=${p%/*}
	done
	[[ -n "$found" ]] || missing+=("$rel")
done < <(cd "$root" && go list -f '{{.Dir}}' ./... && cd benchmarks && go list -f '{{.Dir}}' ./...)
if ((${#missing[@]})); then
	echo "readme-check: these packages have no room in README.md's \"Repository layout\": ${missing[*]}" >&2
	exit 1
fi
echo "readme-check: every package is in README.md's repository layout"

# Every stage `make ci` runs (hack/ci.sh) is in the README's make list.
missing=()
for target in $(grep -oE '"\$make" --no-print-directory (-k )?[a-z-]+' "$root/hack/ci.sh" | awk '{print $NF}'); do
	grep -q "make $target\`" "$readme" || missing+=("make $target")
done
# Every package example the README promises exists as a runnable Example.
promised=$(awk '/^More in the package examples/,/^$/' "$readme" | grep -oE '`[A-Z][A-Za-z]*`' | tr -d '`')
for name in $promised; do
	grep -qE "^func Example(Coordinator_)?$name\(\)" "$root"/coordinator/*_test.go || missing+=("Example of $name")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "readme-check: README.md and the repository part: ${missing[*]}" >&2
	exit 1
fi
echo "readme-check: README.md names every make ci stage and its promised examples exist"
