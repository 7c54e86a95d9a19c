// Package speaker is Berth's node agent. It runs on every node (a DaemonSet
// on the host network) and makes the addresses the controller assigned
// reachable: it announces them over BGP and programs the node's forwarding
// from external address:port to the Service's NodePort.
//
// It is split like the controller. plan.go is pure: from a snapshot of the
// node, the Services, their EndpointSlices and Berth's CRDs it computes what
// this node must announce, to which peers, with which attributes, and which
// forwarding rules it needs. speaker.go is the I/O side: informers, one
// rate-limited work queue that recomputes the whole plan (level-triggered),
// and small interfaces in front of the BGP and nftables back ends.
//
// The speaker writes no Service status. It never trusts spec.externalIPs:
// it announces only addresses in a Service's load-balancer status that lie
// inside an IPPool.
package speaker
