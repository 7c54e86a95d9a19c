// Package lbclass decides which Services berth-ccm serves when it runs
// with --load-balancer-class beside another load-balancer implementation
// (a managed service controller that serves the unclassed Services).
//
// The upstream service controller (k8s.io/cloud-provider) serves only
// Services without spec.loadBalancerClass. With a class set, berth-ccm runs
// that same controller on a filtered view of Services: a ListerWatcher
// that passes only the Services of the class, each presented with the
// class unset. The controller writes only status and the
// load-balancer-cleanup finalizer (by patches that never carry the spec),
// so the presented class is never written back, and it never learns of
// any other Service: it cannot call the cloud for one, nor touch its
// finalizer. Its Services carry Berth's own finalizer (Finalizer), shown to
// the controller as upstream's and turned back by FinalizerTransport,
// because the upstream controller, and so the managed one, cleans up any
// Service carrying upstream's finalizer, whatever its class.
//
// The package holds the rule (Class) once; the aws backend uses it too.
// It must not write to the API server itself.
package lbclass
