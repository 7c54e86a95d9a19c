// Package hostdeps knows which Debian packages provide the programs that
// Berth's tests and demo run (ip, nft, vtysh, ping, ...). Its list,
// packages.txt, is the only one: hack/install-deps.sh installs from it for
// `make test` and .ci/run, the demo installs from it, and tests skip with
// Require, which names the missing package.
//
// It is for tests and the demo only; Berth's components never run these
// programs.
package hostdeps
