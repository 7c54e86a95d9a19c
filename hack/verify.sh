#!/usr/bin/env bash
# Fails when anything generated is stale, when gofmt or go vet complain, or
# when golangci-lint (pinned in tools/lint/go.mod) finds problems.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

status=0
# Regenerate into the work tree, then ask git whether anything changed.
# manifests/ and the chart's crds/ are rendered from charts/berth.
hack/update-codegen.sh
go run ./hack/render
generated=(api client manifests charts/berth/crds)
if ! git diff --quiet --exit-code -- "${generated[@]}" ||
   [ -n "$(git ls-files --others --exclude-standard -- "${generated[@]}")" ]; then
  echo "generated files are stale; run 'make generate' and commit the result:" >&2
  git status --short -- "${generated[@]}" >&2
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
