# Impact: developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := $(CURDIR)/bin
BUF_VERSION := v1.50.0
BUF   := $(BIN)/buf
DATA  ?= $(CURDIR)/.impact-dev
# Time budget of `make test` (CI has 90 minutes; keep this well under 15).
TEST_TIMEOUT ?= 12m

.PHONY: help build run test test-short generate generate-check lint bench load fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build impactd and impactctl into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

run: build ## start impactd --dev on the embedded store with a demo snapshot published
	@./scripts/run-dev.sh "$(BIN)" "$(DATA)"

test: ## unit, conformance and end-to-end tests, race detector on
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short: ## quick tests without the race detector
	$(GO) test -short -count=1 ./...

$(BUF):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

generate: $(BUF) ## regenerate gen/ from proto/ (buf with local, pinned plugins)
	$(BUF) lint
	$(BUF) generate

generate-check: generate ## fail if gen/ differs from what `make generate` writes
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "gen/ is stale: run 'make generate' and commit the result" >&2; \
		git status --porcelain -- gen >&2; git --no-pager diff --stat -- gen >&2; exit 1; fi

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:" $$out >&2; exit 1; fi

bench: ## Go benchmarks of the read, claim and publish paths
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./internal/...

clean: ## remove build output and the dev data directory
	rm -rf $(BIN) $(DATA)
