// Package demo runs Berth on one machine: a local kube-apiserver and etcd
// (built and cached by e2e/controlplane), the Service IP controller in this
// process, and the example pools and Services from manifests/examples. It
// prints what Berth decided and leaves the control plane up for the user to
// explore with kubectl until interrupted.
//
// As root, with FRR and nftables installed, it also builds a network of
// namespaces (e2e/netlab, e2e/frr): a router running FRR, two nodes running
// berth-speaker with BGP and forwarding, a stand-in listener on each node's
// NodePorts, and a client behind the router. It prints the router's BGP
// routes for the example addresses and what answered the client's requests.
// Otherwise it says which part it skipped and why; it never installs
// packages. Everything it creates is removed when it exits.
//
// It is a showcase and a smoke test, not a deployment: nothing here may be
// used by the controller or the speaker.
package demo
