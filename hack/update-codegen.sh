#!/usr/bin/env bash
# Regenerates everything derived from api/: deep-copy functions, the typed
# clientset, listers, informers, apply configurations and the CRD manifests.
# Tool versions are pinned in tools/codegen/go.mod.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BERTH_TOOLS_BIN:-$root/.cache/tools}
mkdir -p "$bin"
(cd tools/codegen && GOBIN="$bin" go install tool)

module=github.com/berthlb/berth
header=hack/boilerplate.go.txt
apis=./api/v1alpha1
out=client

"$bin/deepcopy-gen" --go-header-file "$header" --output-file zz_generated.deepcopy.go "$apis"

rm -rf "$out"
"$bin/applyconfiguration-gen" --go-header-file "$header" \
  --output-dir "$out/applyconfiguration" --output-pkg "$module/$out/applyconfiguration" "$apis"
"$bin/client-gen" --go-header-file "$header" \
  --input-base "" --input "$module/api/v1alpha1" --clientset-name versioned \
  --apply-configuration-package "$module/$out/applyconfiguration" \
  --output-dir "$out/clientset" --output-pkg "$module/$out/clientset"
"$bin/lister-gen" --go-header-file "$header" \
  --output-dir "$out/listers" --output-pkg "$module/$out/listers" "$apis"
"$bin/informer-gen" --go-header-file "$header" \
  --versioned-clientset-package "$module/$out/clientset/versioned" \
  --listers-package "$module/$out/listers" \
  --output-dir "$out/informers" --output-pkg "$module/$out/informers" "$apis"

"$bin/controller-gen" crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=manifests/crds
