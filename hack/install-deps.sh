#!/usr/bin/env bash
# Installs the Debian packages that `make test` (USE=test, the default) or
# `make demo` (USE=demo) need and that are missing, from the one list in
# internal/hostdeps/packages.txt. As root it says what it installs and runs
# apt-get; otherwise it names what is missing, and the tests that need it
# skip and name it too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
use=${1:-test}

missing=()
while read -r pkg uses commands; do
  case ",$uses," in *",$use,"*) ;; *) continue ;; esac
  for c in $commands; do
    if [[ $c == /* ]]; then [ -e "$c" ] || { missing+=("$pkg"); break; }
    else command -v "$c" >/dev/null || { missing+=("$pkg"); break; }
    fi
  done
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$root/internal/hostdeps/packages.txt")

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "==> Not root, so not installing the Debian packages ${missing[*]}; the tests that need them skip (sudo $0 $use installs them)"
  exit 0
fi
echo "==> make $use needs the Debian packages ${missing[*]}; installing them with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
