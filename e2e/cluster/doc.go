// Package cluster brings up a real Kubernetes cluster on one machine for
// Berth's end-to-end tests: the test control plane (package controlplane:
// etcd and kube-apiserver) plus kube-controller-manager and kube-scheduler
// in the root network namespace, and worker nodes that are network
// namespaces on a netlab bridge, each running its own containerd (with
// runc), kubelet and kube-proxy. Pods get their addresses from the CNI
// bridge and host-local plugins out of the node's podCIDR (which
// kube-controller-manager allocates), and every node routes the other
// nodes' pod ranges through them, so pods on different nodes reach each
// other without encapsulation and without address translation.
//
// Nothing can be pulled: the pause image and the echo image (package
// testimages) and Berth's own images (`make images`) are built as OCI
// archives and imported into every node's containerd.
//
// The machine's facts this relies on: cgroup v1 (hybrid) is accepted
// (failCgroupV1: false) with the cgroupfs driver and a cgroupRoot per node
// made in every mounted hierarchy; containerd's CRI runs with
// restrict_oom_score_adj, as processes here may not lower their
// oom_score_adj.
package cluster
