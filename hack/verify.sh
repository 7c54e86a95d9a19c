#!/usr/bin/env bash
# Fails when anything generated is stale, when gofmt or go vet complain, or
# when golangci-lint (pinned in tools/lint/go.mod) finds problems.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

status=0
# Regenerate into the work tree, then ask git whether anything changed.
hack/update-codegen.sh
if ! git diff --quiet --exit-code -- api client manifests/crds ||
   [ -n "$(git ls-files --others --exclude-standard -- api client manifests/crds)" ]; then
  echo "generated files are stale; run 'make generate' and commit the result:" >&2
  git status --short -- api client manifests/crds >&2
  status=1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^tools/') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  status=1
fi

go vet ./... || status=1
hack/lint.sh || status=1
exit $status
