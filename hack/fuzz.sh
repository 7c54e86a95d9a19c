#!/usr/bin/env bash
# Runs every fuzz target in the repository for FUZZTIME (20s unless set),
# one after the other, after its seed corpus (which `make unit` runs too).
# A crasher the fuzzer finds is written to the package's
# testdata/fuzz/<Target>/ and fails the run; commit it with the fix, and it
# stays in the seed corpus from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}
targets=$(grep -rEo --include='*_test.go' --exclude-dir=tools --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]+' . | sort)
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }
n=0
while IFS=: read -r file fn; do
  pkg=$(dirname "$file") name=${fn#func }
  echo "==> fuzz $pkg $name for $fuzztime"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
  n=$((n + 1))
done <<<"$targets"
echo "==> $n fuzz targets ran for $fuzztime each"
