#!/usr/bin/env bash
# Runs golangci-lint at the version pinned in tools/lint/go.mod.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BERTH_TOOLS_BIN:-$root/.cache/tools}
mkdir -p "$bin"
(cd tools/lint && GOBIN="$bin" go install tool)
"$bin/golangci-lint" run ./...
