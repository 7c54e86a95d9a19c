// Package netlab builds small throwaway networks out of Linux network
// namespaces for privileged tests: one bridge in the root namespace and any
// number of hosts, each a namespace with an eth0 on that bridge and an IPv4
// and IPv6 address.
//
// Processes in the root namespace (the test itself, a control plane bound to
// the bridge address) and processes in the hosts reach each other over the
// bridge. Addresses come from 198.18.<n>.0/24 and 2001:db8:<n>::/64 with n in
// 1..127, benchmarking and documentation ranges. Hosts get no default route,
// so nothing they send can leave the machine; tests that need more (a route
// to a load-balancer pool) add it themselves.
//
// Everything a lab creates is named after its random id (bridge bth<id>,
// namespaces bth-<id>-<host>, veths bth<id>v<k>) and is removed by Close
// (which New registers as the test's cleanup), including processes left
// running in its namespaces. A lab whose process died before cleaning up
// (SIGKILL, a -timeout panic) is removed by the next New or Create on the
// machine.
//
// New and AddHost are for tests (they fail the test on error); Create and
// CreateHost return errors, for callers that are not tests (the demo).
//
// It shells out to ip(8) from iproute2 rather than using netlink, because the
// tests need nothing that ip cannot do. It must not touch any interface or
// namespace it did not create, and it is for tests and the demo only.
package netlab
