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
