// Package migrate converts another load-balancer implementation's
// configuration into Berth's: MetalLB's IPAddressPool, BGPPeer (v1beta1 and
// v1beta2), BGPAdvertisement, L2Advertisement and Community, and Cilium's
// CiliumLoadBalancerIPPool and BGP resources (CiliumBGPClusterConfig,
// CiliumBGPPeerConfig, CiliumBGPAdvertisement), read from YAML or from a
// live cluster. It returns BerthIPPool, BerthBGPPeer, BerthBGPAdvertisement and
// BerthL2Advertisement objects and a report of every field it could not carry
// over, or carried over with a different meaning, and why.
//
// Conversion is a pure function of the objects read (Convert); reading and
// writing are separate (ReadYAML, ReadCluster, WriteYAML, WriteReport). It
// never writes to a cluster: the operator reviews the output and applies it.
// Names are kept, so that a Service's metallb.universe.tf/address-pool
// annotation (read by Berth as an alias of berth.dev/pool) still names the
// same pool.
package migrate
