// Package doctor is `kubectl berth doctor`: it reads what an operator would
// look at when a LoadBalancer Service is unreachable (Berth's CRDs, the
// controller's leader Lease, the speakers on every eligible node, the
// layer-2 membership Secret, the pools, the pending Services, kube-proxy's
// mode and the Services' source ranges) and prints each problem with what
// to do about it.
//
// Gather reads a Snapshot from the API server; Check is a pure function
// from a Snapshot to Findings; Write prints them. The package only reads:
// it must never change anything in the cluster.
package doctor
