#!/usr/bin/env bash
# build-controlplane.sh builds (or reuses) the kube-apiserver, etcd and
# kube-proxy binaries that Berth's end-to-end tests run, from the pinned tools
# modules in tools/kube-apiserver, tools/etcd and tools/kube-proxy. With the
# argument "cluster" it also builds what the real cluster of e2e/cluster runs:
# kube-controller-manager, kube-scheduler and kubelet (tools/<name>) and the
# CNI plugins bridge, host-local, loopback and portmap (tools/cni-plugins, a
# directory of binaries).
#
# Binaries are cached outside the repository, in $BERTH_CACHE/bin (default
# $HOME/.cache/berth/bin), so fresh clones and CI runs on the same machine
# reuse them. Each file name carries the upstream version and a hash of the
# tools module (go.mod, go.sum, main.go) and of this build recipe, so changing
# any of them builds a new binary instead of reusing a stale one.
#
# Progress goes to stderr. On success stdout carries three lines,
#   kube-apiserver=/abs/path
#   etcd=/abs/path
#   kube-proxy=/abs/path
# and with "cluster" four more (kube-controller-manager=, kube-scheduler=,
# kubelet=, cni-plugins=/abs/dir), which e2e/controlplane.BinaryPaths parses. Concurrent callers (parallel test
# packages) serialise on a lock file so each binary is built once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${BERTH_CACHE:-${HOME:-/root}/.cache/berth}"
bindir="${cache}/bin"
mkdir -p "${bindir}"

# Bump when the build recipe below changes in a way that changes the output.
recipe=1

log() { echo "build-controlplane: $*" >&2; }

# module_version prints the version that go.mod in $1 requires for module $2.
module_version() {
	awk -v mod="$2" '$1 == mod && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == mod { print $3; exit }' "$1/go.mod"
}

# key prints a short hash of the tools module $1 and of the recipe.
key() {
	(cd "$1" && cat go.mod go.sum $(ls main.go 2>/dev/null) && echo "recipe=${recipe}") | sha256sum | cut -c1-12
}

# build NAME MODULE_DIR VERSION LDFLAGS ETA builds one binary if missing and
# prints its path.
build() {
	local name="$1" dir="$2" version="$3" ldflags="$4" eta="$5"
	local out="${bindir}/${name}-${version}-$(key "${dir}")"
	if [[ -x "${out}" ]]; then
		log "reusing ${out}"
		echo "${out}"
		return
	fi
	log "building ${name} ${version} (not cached yet; ${eta})..."
	local start=${SECONDS}
	local tmp="${out}.tmp.$$"
	# GOWORK=off: the tools modules are built on their own, never as part of
	# a workspace that might pull in the main module's dependency versions.
	if ! (cd "${dir}" && GOWORK=off GOFLAGS=-mod=readonly go build -ldflags "${ldflags}" -o "${tmp}" .) >&2; then
		rm -f "${tmp}"
		log "building ${name} ${version} failed"
		return 1
	fi
	mv -f "${tmp}" "${out}"
	log "built ${out} in $((SECONDS - start))s"
	echo "${out}"
}

# build_cni VERSION builds the CNI plugins (the tool directives of
# tools/cni-plugins) into one directory if missing and prints its path.
build_cni() {
	local dir="${root}/tools/cni-plugins" version="$1"
	local out="${bindir}/cni-plugins-${version}-$(key "${dir}")"
	if [[ -x "${out}/bridge" ]]; then
		log "reusing ${out}"
		echo "${out}"
		return
	fi
	log "building CNI plugins ${version} (not cached yet; about 30 s)..."
	local start=${SECONDS}
	local tmp="${out}.tmp.$$"
	rm -rf "${tmp}" && mkdir -p "${tmp}"
	# CNI plugins run on the host, outside any image: static binaries.
	if ! (cd "${dir}" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -ldflags "-s -w" -o "${tmp}/" $(awk '/^tool \(/ { t = 1; next } t && /^\)/ { t = 0 } t { print $1 }' go.mod)) >&2; then
		rm -rf "${tmp}"
		log "building CNI plugins ${version} failed"
		return 1
	fi
	rm -rf "${out}" && mv -f "${tmp}" "${out}"
	log "built ${out} in $((SECONDS - start))s"
	echo "${out}"
}

kas_dir="${root}/tools/kube-apiserver"
etcd_dir="${root}/tools/etcd"
kp_dir="${root}/tools/kube-proxy"
kas_version="$(module_version "${kas_dir}" k8s.io/kubernetes)"
etcd_version="$(module_version "${etcd_dir}" go.etcd.io/etcd/server/v3)"
kp_version="$(module_version "${kp_dir}" k8s.io/kubernetes)"
if [[ -z "${kas_version}" || -z "${etcd_version}" || -z "${kp_version}" ]]; then
	log "cannot read versions from ${kas_dir}/go.mod, ${etcd_dir}/go.mod or ${kp_dir}/go.mod"
	exit 1
fi

# The API server reports and enforces its own version (emulation and
# compatibility versions are derived from it), so stamp the real one rather
# than the v0.0.0-master default of a plain go build.
kas_minor="${kas_version#v1.}"
kas_minor="${kas_minor%%.*}"
kas_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${kas_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${kas_minor} -X k8s.io/component-base/version.gitTreeState=clean"
# kube-proxy too: it checks feature gates against its emulation version.
kp_minor="${kp_version#v1.}"
kp_minor="${kp_minor%%.*}"
kp_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${kp_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${kp_minor} -X k8s.io/component-base/version.gitTreeState=clean"

exec 9>"${bindir}/.lock"
if ! flock -n 9; then
	log "waiting for another build-controlplane.sh to finish..."
	flock 9
fi

kas="$(build kube-apiserver "${kas_dir}" "${kas_version}" "${kas_ldflags}" "up to ~12 min on 2 cores with a cold Go build cache")"
etcd="$(build etcd "${etcd_dir}" "${etcd_version}" "-s -w" "up to ~2 min on 2 cores with a cold Go build cache")"
kp="$(build kube-proxy "${kp_dir}" "${kp_version}" "${kp_ldflags}" "about 30 s once kube-apiserver is built, as they share most packages")"
if [[ "${1:-}" == cluster ]]; then
	# Same k8s.io/kubernetes version and ldflags as kube-proxy: they share
	# nearly all packages, so each takes a minute or two once it is built.
	kcm="$(build kube-controller-manager "${root}/tools/kube-controller-manager" "${kp_version}" "${kp_ldflags}" "1 to 3 min once kube-apiserver is built")"
	sched="$(build kube-scheduler "${root}/tools/kube-scheduler" "${kp_version}" "${kp_ldflags}" "about 1 min once kube-apiserver is built")"
	kubelet="$(build kubelet "${root}/tools/kubelet" "${kp_version}" "${kp_ldflags}" "about 2 min once kube-apiserver is built")"
	cni_version="$(module_version "${root}/tools/cni-plugins" github.com/containernetworking/plugins)"
	cni="$(build_cni "${cni_version}")"
fi
echo "kube-apiserver=${kas}"
echo "etcd=${etcd}"
echo "kube-proxy=${kp}"
if [[ "${1:-}" == cluster ]]; then
	echo "kube-controller-manager=${kcm}"
	echo "kube-scheduler=${sched}"
	echo "kubelet=${kubelet}"
	echo "cni-plugins=${cni}"
fi
