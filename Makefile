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

comma := ,
E2E_TIMEOUT ?= 45m
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /e2e)

.PHONY: all build test unit fuzz e2e bench bench-check soak generate verify lint demo demo-local demo-test controlplane cluster-test clean chart release images push test-deps

all: build

build: ## Build Berth's binaries into ./bin
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The control plane is built first: status/'s golden test (a unit package)
# starts a kube-apiserver, and on a cold machine its build alone would
# outlast go test's default 10-minute timeout.
test: test-deps controlplane unit fuzz e2e ## Unit tests, every fuzz target for FUZZTIME, end-to-end tests (the README's test command)

test-deps: ## As root, install the missing Debian packages the tests run (internal/hostdeps/packages.txt)
	hack/install-deps.sh test

unit: ## Unit tests, with the race detector
	@$(GO) test -race -count=1 -timeout 30m $(UNIT_PKGS) | grep -v "no test files"
	$(GO) -C tools/images test -count=1 ./...

FUZZTIME ?= 20s
fuzz: ## Every fuzz target for FUZZTIME each (crashers land in testdata/fuzz and fail the run)
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

e2e: controlplane ## End-to-end tests against a real kube-apiserver and etcd
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...

# Every benchmark; the output is kept in BENCH_OUT for bench-check. Those
# that measure one long run (a router, nftables, a control plane) run once.
BENCH_OUT ?= $(BIN)/bench.txt
bench: controlplane ## All benchmarks (figures go in docs/benchmarks.md); output in BENCH_OUT
	@mkdir -p $(dir $(BENCH_OUT))
	$(GO) test -run '^$$' -bench . -benchmem ./allocator/... ./l2/... | tee $(BENCH_OUT)
	$(GO) test -p 1 -run '^$$' -bench . -benchtime=1x -timeout 90m ./bgp/... ./bfd/... ./nodeport/... ./e2e/... | tee -a $(BENCH_OUT)

bench-check: bench ## make bench, then fail naming each figure docs/benchmarks.md calls met that misses its target by over 1.5x
	$(GO) run ./hack/benchcheck -targets hack/benchcheck/targets.txt $(BENCH_OUT)

SOAK_DURATION ?= 10m
SOAK_STEPS ?= 150
soak: controlplane ## The controller's model-based test with random seeds for SOAK_DURATION (result in docs/benchmarks.md)
	$(GO) test -count=1 -timeout 90m -run '^TestControllerModel$$' -v ./e2e/ -model.duration=$(SOAK_DURATION) -model.steps=$(SOAK_STEPS)

controlplane: ## Build (or reuse) the cached kube-apiserver, etcd, kube-proxy and the real cluster's binaries
	hack/build-controlplane.sh cluster

cluster-test: controlplane ## Only the scenarios on the real cluster (e2e/cluster; root)
	$(GO) test -count=1 -timeout 20m -run '^TestCluster' -v ./e2e/

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
	$(GO) run ./hack/render -verify $(VERSION) -out dist/release -images $(subst $(eval) ,$(comma),$(IMAGES))

verify: ## Fail on stale generated code, gofmt, go vet or golangci-lint findings
	hack/verify.sh

lint: ## golangci-lint at the pinned version
	hack/lint.sh

demo: build ## Run Berth on a real cluster on this machine (root): kubelets, containerd, pods, Berth installed by its chart
	hack/build-controlplane.sh cluster
	$(BIN)/berth-demo --cluster

demo-local: build ## Run Berth's processes against a local control plane, without kubelets (the network part as root)
	hack/build-controlplane.sh
	$(BIN)/berth-demo

demo-test: controlplane ## Only the test of `make demo` (TestDemoCluster; root; brings up a cluster of its own)
	BERTH_DEMO_CLUSTER=1 $(GO) test -count=1 -timeout 20m -run '^TestDemoCluster$$' -v ./e2e/

# Images: static binaries on an empty base, built without a container
# daemon by tools/images (go-containerregistry). See docs/development.md.
# -s -w drop the symbol table and DWARF (a third of each binary); stack
# traces and pprof still work from Go's own tables.
DIST ?= dist
IMAGES = berth-controller berth-speaker berth-ccm
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_REPOSITORY ?= ghcr.io/berthlb
# The commit's time, so that the same commit gives the same image digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_TOOL = $(GO) -C tools/images run .

images: ## OCI image archives for every platform into dist/images (no container daemon)
	@set -e; for p in $(subst $(comma), ,$(IMAGE_PLATFORMS)); do \
	  echo "go build $$p: $(IMAGES)"; \
	  CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
	    -o $(CURDIR)/$(DIST)/bin/$${p%/*}_$${p#*/}/ $(addprefix ./cmd/,$(IMAGES)); \
	done
	$(IMAGE_TOOL) build -binaries $(CURDIR)/$(DIST)/bin -out $(CURDIR)/$(DIST)/images \
	  -platforms $(IMAGE_PLATFORMS) -repository $(IMAGE_REPOSITORY) -version $(VERSION) \
	  -revision "$$(git rev-parse HEAD 2>/dev/null)" -epoch $(SOURCE_DATE_EPOCH)

push: images ## Push the image indexes to REGISTRY (make push REGISTRY=registry.example.com/berthlb)
	@test -n "$(REGISTRY)" || { echo "make push needs REGISTRY, e.g. make push REGISTRY=registry.example.com/berthlb" >&2; exit 1; }
	$(IMAGE_TOOL) push -registry $(REGISTRY) $(foreach i,$(IMAGES),$(CURDIR)/$(DIST)/images/$(i).oci.tar)

clean:
	rm -rf $(BIN) .cache $(DIST)
