// Package cloud is Berth's k8s.io/cloud-provider plugin: an adapter that
// implements cloudprovider.Interface under the provider name "berth" for
// clusters that run a cloud-controller-manager (cmd/berth-ccm).
//
// Its only real capability is LoadBalancer. The upstream service controller
// calls it for LoadBalancer Services without spec.loadBalancerClass, or,
// with berth-ccm's --load-balancer-class, for those of that class only,
// which ServiceController's filtered view (package lbclass) presents
// without it; the plugin delegates each call to a backend chosen in the cloud config: today
// "pools", which serves addresses from BerthIPPools with the same config and
// allocator packages as the add-on controller, restart-stable because it
// replays the addresses found in Services' status before it answers.
//
// The package must not mutate the Services and Nodes it is handed (they come
// from the service controller's cache), must not write Service status (the
// service controller does, from what EnsureLoadBalancer returns), and must
// never serve a Service that the add-on controller (berth-controller) is
// already serving: such a Service is refused with an error that says why.
// It keeps no package-level state and registers nothing globally: the
// command passes New to k8s.io/cloud-provider/app as its cloud initializer.
package cloud
