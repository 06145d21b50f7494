# lockcoord — the two commands are `make demo` and `make test`.
#
#   make demo        run the demo (contending workers on an embedded miniredis)
#   make test        start/install Redis and Postgres, run every test with -race;
#                    also writes coverage.out for the coverage gate
#   make cover       make test, then the coverage gate (97% of library statements)
#   make lint        gofmt, go vet, golangci-lint (pinned), README example compiles,
#                    every package builds for Windows and macOS, the dashboard and
#                    alerting rules in deploy/ check (deploy-check)
#   make bench       every benchmark against the peers (~8 min alone); rewrites docs/benchmarks.md
#                    when the machine was quiet (FORCE=1 make bench: also when not)
#   make bench-smoke the benchmarks once each, -benchtime=100x (CI: they compile and work),
#                    then the benchmark bar: lockcoord/floor ratios, never failing on them
#   make chaos       the safety scenarios (chaos/) at full size
#   make ci          what .ci/run runs: lint, demo-check, test, coverage gate (all stages run)
#   make services    only make sure Redis and Postgres are up

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go

# The demo: lockctl demo on an embedded miniredis (needs nothing but Go).
DEMO ?= $(GO) run ./cmd/lockctl demo
DEMO_CHECK_FLAGS ?= --duration 2s

# Tests: every package, race detector, never cached. The same run writes the
# coverage profile over the library packages, so the gate needs no second run.
GOTEST_FLAGS ?= -race -count=1
TEST_LOG := .cache/test.log
TEST_JSON := .cache/test.json
GOTESTSUM_VERSION := v1.13.0
GOTESTSUM ?= $(GO) run gotest.tools/gotestsum@$(GOTESTSUM_VERSION)
COVER_PROFILE := coverage.out
COVER_MIN ?= 97.0
# Library packages under the gate; pgaudit joins once it exists. Test-support
# packages (*/storetest, internal/ but for internal/scripts) are instrumented
# but left out of the percentage by hack/cover.sh.
COVER_PATTERNS := ./coordinator/... ./redisstore/... ./internal/scripts/... $(if $(wildcard pgaudit/*.go),./pgaudit/...)
comma := ,
empty :=
space := $(empty) $(empty)
COVERPKG := $(subst $(space),$(comma),$(strip $(COVER_PATTERNS)))

# Services the tests use (hack/services.sh makes sure they answer).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

GOLANGCI_VERSION := v2.15.0
GOLANGCI := bin/.golangci-$(GOLANGCI_VERSION)/golangci-lint

.PHONY: help demo demo-check services test cover cover-report lint fmt-check vet golangci readme-check cross-build deploy-check bench bench-smoke chaos ci

help:
	@sed -n 's/^#   //p' Makefile

demo:
	$(DEMO)

demo-check:
	$(DEMO) $(DEMO_CHECK_FLAGS)

services:
	@bash hack/services.sh

# Tests that need Redis or Postgres fail instead of skipping.
test: export LOCKCOORD_REQUIRE_SERVICES := 1
test: export LOCKCOORD_TEST_DATABASE_URL := $(TEST_DATABASE_URL)
#
# gotestsum (pinned, run with go run) prints a line per package as it
# ends and the output of each failed test; the per-package coverage go test
# prints is left out (each counts only its own tests' share of the library,
# 0% to 40%, and would read as alarming next to the gate). The run ends
# with a summary (hack/testsummary): packages, tests, skipped, failures,
# the merged coverage figure the gate reads, and the time taken (the
# skipped tests are listed there when CI is set). go test's
# own output goes to $(TEST_LOG), which hack/ci.sh reads.
test: services
	@mkdir -p $(dir $(TEST_LOG)) && rm -f $(COVER_PROFILE) $(TEST_JSON)
	@start=$$SECONDS; status=0; \
	$(GOTESTSUM) --format pkgname-and-test-fails --format-hide-empty-pkg --hide-summary=skipped --jsonfile $(TEST_JSON) -- \
		$(GOTEST_FLAGS) -coverpkg=$(COVERPKG) -coverprofile=$(COVER_PROFILE) ./... \
		| sed -u -E 's/ \(coverage: [^)]*\)//' || status=$$?; \
	total=""; if [[ -s $(COVER_PROFILE) ]]; then total=$$(bash hack/cover.sh $(COVER_PROFILE) 0 | awk '$$1 == "total" {print $$2}'); fi; \
	$(GO) run ./hack/testsummary -json $(TEST_JSON) -log $(TEST_LOG) -seconds $$((SECONDS - start)) \
		-coverage "$$total" -min $(COVER_MIN) || status=1; \
	exit $$status

cover: test
	@bash hack/cover.sh $(COVER_PROFILE) $(COVER_MIN)

# The gate alone, over the profile the last `make test` wrote.
cover-report:
	@bash hack/cover.sh $(COVER_PROFILE) $(COVER_MIN)

lint: fmt-check vet golangci readme-check cross-build deploy-check

# The Grafana dashboard and the Prometheus rules (deploy/): parsed with
# Prometheus's own parsers, their metrics checked against the library's.
# A module of its own (deploy/check/go.mod): Prometheus stays out of
# lockcoord's dependencies.
deploy-check:
	cd deploy/check && $(GO) vet ./... && $(GO) test -count=1 ./...

fmt-check:
	@files=$$(find . \( -path '*/.*' -o -path '*/_*' -o -path './bin' -o -name testdata \) -prune \
		-o -name '*.go' -print); \
	bad=$$(gofmt -l $$files); \
	if [[ -n "$$bad" ]]; then echo "gofmt: these files need gofmt -w:"; echo "$$bad"; exit 1; fi; \
	echo "gofmt: ok"

vet:
	$(GO) vet ./...

golangci: $(GOLANGCI)
	$(GOLANGCI) run --allow-parallel-runners ./...
	cd benchmarks && $(GO) vet ./... && ../$(GOLANGCI) run --allow-parallel-runners ./...
	cd deploy/check && ../../$(GOLANGCI) run --allow-parallel-runners ./...

# Built once from the module proxy at the pinned version, then reused.
$(GOLANGCI):
	@echo "installing golangci-lint $(GOLANGCI_VERSION) into $(@D) (once)"
	GOBIN=$(CURDIR)/$(@D) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	@ln -sfn .golangci-$(GOLANGCI_VERSION)/golangci-lint bin/golangci-lint

readme-check:
	@bash hack/readme-check.sh

# The library builds everywhere; lockctl too, its run command being
# Unix-only (it says so on other systems).
CROSS_TARGETS ?= windows/amd64 darwin/arm64
cross-build:
	@for t in $(CROSS_TARGETS); do \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./... || { echo "cross-build: $$t failed"; exit 1; }; \
	done; echo "cross-build: ok ($(CROSS_TARGETS))"

# The benchmarks are a module of their own (benchmarks/go.mod): the peers
# they compare with stay out of lockcoord's dependencies.
bench:
	GO=$(GO) bash benchmarks/run.sh full

bench-smoke:
	GO=$(GO) bash benchmarks/run.sh smoke

# The safety scenarios at full size (make test runs their short form).
CHAOS_TIMEOUT ?= 60m
chaos: export LOCKCOORD_REQUIRE_SERVICES := 1
chaos: export LOCKCOORD_TEST_DATABASE_URL := $(TEST_DATABASE_URL)
chaos: export LOCKCOORD_CHAOS := full
chaos: services
	$(GO) test -race -count=1 -timeout $(CHAOS_TIMEOUT) -v ./chaos/...

# Every stage runs even when one fails (hack/ci.sh); one test run serves
# both the tests and the coverage gate; the output ends with go test's
# package results, which CI reads.
ci:
	@MAKE="$(MAKE)" TEST_LOG=$(TEST_LOG) COVER_PROFILE=$(COVER_PROFILE) COVER_MIN=$(COVER_MIN) bash hack/ci.sh
