// Package demo runs Berth on one machine, in one of two ways.
//
// With Options.Cluster (`make demo`, as root) it brings up a real cluster
// (package e2e/cluster: control plane, kube-controller-manager,
// kube-scheduler, two nodes each running containerd, kubelet and
// kube-proxy in a network namespace), installs Berth's chart with the Helm
// SDK, peers an FRR router with the speakers, runs echo pods behind a BGP
// Service and a layer-2 Service, and shows a client namespace's requests to
// both addresses answered by the pods. Everything it made is removed when
// it exits, on Ctrl-C too.
//
// Otherwise it runs a local kube-apiserver and etcd
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
// Otherwise it says which part it skipped and why. Everything it creates is
// removed when it exits.
//
// As root, both ways install the Debian packages they miss (the list in
// internal/hostdeps) after saying so.
//
// It is a showcase and a smoke test, not a deployment: nothing here may be
// used by the controller or the speaker.
package demo
