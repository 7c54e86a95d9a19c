# Berth's developer entry points. `make test` is what CI runs (see .ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -o pipefail -c
GO ?= go
BIN ?= bin
# Binaries of the test control plane are cached here, keyed by version, so
# that fresh clones and CI on the same machine reuse them.
export BERTH_CACHE ?= $(HOME)/.cache/berth

# What --version prints (internal/version), set at link time.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS = -X github.com/berthlb/berth/internal/version.version=$(VERSION) -X github.com/berthlb/berth/internal/version.commit=$(COMMIT)

E2E_TIMEOUT ?= 45m
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /e2e)

.PHONY: all build test unit e2e bench generate verify lint demo controlplane clean

all: build

build: ## Build Berth's binaries into ./bin
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test: unit e2e ## Unit and end-to-end tests (the README's test command)

unit: ## Unit tests, with the race detector
	@$(GO) test -race -count=1 $(UNIT_PKGS) | grep -v "no test files"

e2e: controlplane ## End-to-end tests against a real kube-apiserver and etcd
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...

bench: controlplane ## Benchmarks (figures go in docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./allocator/...
	$(GO) test -run '^$$' -bench . -benchtime=1x -timeout 30m ./e2e/...

controlplane: ## Build (or reuse) the cached kube-apiserver, etcd and kube-proxy
	hack/build-controlplane.sh

generate: ## Regenerate deep-copy, clients, listers, informers and CRDs
	hack/update-codegen.sh

verify: ## Fail on stale generated code, gofmt, go vet or golangci-lint findings
	hack/verify.sh

lint: ## golangci-lint at the pinned version
	hack/lint.sh

demo: build controlplane ## Run Berth on this machine against a local control plane
	$(BIN)/berth-demo

clean:
	rm -rf $(BIN) .cache
