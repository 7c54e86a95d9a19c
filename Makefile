# Berth's developer entry points. `make test` is what CI runs (see .ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -o pipefail -c
GO ?= go
BIN ?= bin
# Binaries of the test control plane are cached here, keyed by version, so
# that fresh clones and CI on the same machine reuse them.
export BERTH_CACHE ?= $(HOME)/.cache/berth

E2E_TIMEOUT ?= 45m
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /e2e)

.PHONY: all build test unit e2e bench soak generate verify lint demo controlplane clean chart release

all: build

build: ## Build Berth's binaries into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

test: unit e2e ## Unit and end-to-end tests (the README's test command)

unit: ## Unit tests, with the race detector
	@$(GO) test -race -count=1 $(UNIT_PKGS) | grep -v "no test files"

e2e: controlplane ## End-to-end tests against a real kube-apiserver and etcd
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...

bench: controlplane ## Benchmarks (figures go in docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./allocator/...
	$(GO) test -run '^$$' -bench . -benchtime=1x -timeout 30m ./e2e/...

SOAK_DURATION ?= 10m
SOAK_STEPS ?= 150
soak: controlplane ## The controller's model-based test with random seeds for SOAK_DURATION (result in docs/benchmarks.md)
	$(GO) test -count=1 -timeout 90m -run '^TestControllerModel$$' -v ./e2e/ -model.duration=$(SOAK_DURATION) -model.steps=$(SOAK_STEPS)

controlplane: ## Build (or reuse) the cached kube-apiserver, etcd and kube-proxy
	hack/build-controlplane.sh

generate: ## Regenerate deep-copy, clients, listers, informers, CRDs, and manifests/ from the chart
	hack/update-codegen.sh
	$(GO) run ./hack/render

chart: ## Copy the CRDs into charts/berth and render manifests/ from it
	$(GO) run ./hack/render

release: ## dist/release for VERSION=x.y.z: chart package, image archives, berth.yaml bundle, SHA256SUMS
	@[[ "$(VERSION)" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "usage: make release VERSION=x.y.z" >&2; exit 2; }
	$(MAKE) images VERSION=$(VERSION)
	rm -rf dist/release && mkdir -p dist/release
	cp dist/images/*.tar dist/release/
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(GO) run ./hack/render -release $(VERSION) -out dist/release

verify: ## Fail on stale generated code, gofmt, go vet or golangci-lint findings
	hack/verify.sh

lint: ## golangci-lint at the pinned version
	hack/lint.sh

demo: build controlplane ## Run Berth on this machine against a local control plane
	$(BIN)/berth-demo

clean:
	rm -rf $(BIN) .cache
