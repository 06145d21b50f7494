# lockcoord — the two commands are `make demo` and `make test`.
#
#   make demo        run the demo (contending workers on an embedded miniredis)
#   make test        start/install Redis and Postgres, run every test with -race;
#                    also writes coverage.out for the coverage gate
#   make cover       make test, then the coverage gate (97% of library statements)
#   make lint        gofmt, go vet, golangci-lint (pinned), README example compiles,
#                    every package builds for Windows and macOS, the dashboard and
#                    alerting rules in deploy/ check (deploy-check)
#   make bench       every benchmark against the peers (~10 min); rewrites docs/benchmarks.md
#   make bench-smoke the benchmarks once each, -benchtime=100x (CI: they compile and work)
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
test: services
	@mkdir -p $(dir $(TEST_LOG)) && rm -f $(COVER_PROFILE)
	$(GO) test $(GOTEST_FLAGS) -coverpkg=$(COVERPKG) -coverprofile=$(COVER_PROFILE) ./... 2>&1 | tee $(TEST_LOG)

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
	$(GOLANGCI) run ./...
	cd benchmarks && $(GO) vet ./... && ../$(GOLANGCI) run ./...

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
