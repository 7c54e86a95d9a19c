// Package speaker is Berth's node agent. It runs on every node (a DaemonSet
// on the host network) and makes the addresses the controller assigned
// reachable: it announces them over BGP, or answers ARP/NDP for them when
// it is their layer-2 owner (see l2 and docs/layer2.md), and programs the
// node's forwarding from external address:port to the Service's NodePort.
//
// It is split like the controller. plan.go is pure: from a snapshot of the
// node, the Services, their EndpointSlices and Berth's CRDs it computes what
// this node must announce, to which peers, with which attributes, which
// addresses it owns on layer 2 (l2plan.go, given the membership view), and
// which forwarding rules it needs. l2.go applies layer-2 ownership: the
// handover of planned moves, Events and the membership's lifecycle;
// drain.go decides which addresses the new owner of a planned move drains
// to the old owner, and routes.go installs their host routes (route
// protocol 0xbe), the one thing the speaker writes outside its nftables
// table.
// speaker.go is the I/O side: informers, one rate-limited work queue that
// recomputes the whole plan (level-triggered), and small interfaces in
// front of the BGP and nftables back ends.
//
// The speaker writes no Service status. It never trusts spec.externalIPs:
// it announces only addresses in a Service's load-balancer status that lie
// inside a BerthIPPool.
package speaker
