// Package controlplane runs a real Kubernetes control plane — etcd and
// kube-apiserver, built from the pinned tools modules — for Berth's
// end-to-end tests and benchmarks.
//
// It starts only the API server and its storage: no controller-manager,
// scheduler or kubelet. Tests therefore create Nodes themselves (CreateNode)
// and must not expect anything that those components do (Pods being
// scheduled, EndpointSlices for selectors, Node conditions changing). The
// API server runs with RBAC, service-account signing keys and dual-stack
// Service ranges, so Services of every kind can be created exactly as on a
// real cluster.
//
// Binaries are built on first use by hack/build-controlplane.sh and cached
// outside the repository (see Binaries); the first run on a machine takes
// about fifteen minutes, later ones a few seconds.
//
// The package holds no global state: every ControlPlane owns its ports, its
// data directory and its two processes, and Stop releases all of them. It
// must not be imported by non-test code.
package controlplane
