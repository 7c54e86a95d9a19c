// Package demo runs Berth on one machine: a local kube-apiserver and etcd
// (built and cached by e2e/controlplane), the Service IP controller in this
// process, and the example pools and Services from manifests/examples. It
// prints what Berth decided and leaves the control plane up for the user to
// explore with kubectl until interrupted.
//
// It is a showcase and a smoke test, not a deployment: nothing here may be
// used by the controller or the speaker.
package demo
