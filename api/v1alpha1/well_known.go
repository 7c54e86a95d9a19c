package v1alpha1

// Annotations a user sets on a Service to steer Berth.
const (
	// AnnotationPool names the pool, or a comma-separated list of pools,
	// that a Service wants its addresses from.
	AnnotationPool = "berth.dev/pool"
	// AnnotationAddresses lists the addresses a Service asks for, comma
	// separated, at most one per IP family.
	AnnotationAddresses = "berth.dev/addresses"
	// AnnotationSharingKey lets Services share one address: Services with
	// the same key (and ports that do not collide) get the same address.
	AnnotationSharingKey = "berth.dev/sharing-key"
)

// DefaultLoadBalancerClass is the spec.loadBalancerClass that Berth handles
// unless told otherwise.
const DefaultLoadBalancerClass = "berth.dev/lb"

// ServiceConditionAddressAllocated is the type of the condition Berth keeps
// on each Service it handles; its reason says why an address is missing.
const ServiceConditionAddressAllocated = "berth.dev/AddressAllocated"

// Reasons of the AddressAllocated condition.
const (
	ReasonAllocated                   = "Allocated"
	ReasonPoolExhausted               = "PoolExhausted"
	ReasonRequestedAddressUnavailable = "RequestedAddressUnavailable"
	ReasonNoMatchingPool              = "NoMatchingPool"
	ReasonSharingConflict             = "SharingConflict"
	ReasonInvalidRequest              = "InvalidRequest"
	// ReasonPartiallyAllocated: the Service holds some of the addresses it
	// asked for but not all (a requested address, or a family its pools
	// could serve but cannot now); the condition is False and names what
	// is missing and why.
	ReasonPartiallyAllocated = "PartiallyAllocated"
)

// ServiceConditionAdvertised is the type of the condition the controller
// keeps on each Service holding addresses: whether a BerthBGPAdvertisement or a
// BerthL2Advertisement applies to each of them (its pool, namespace and
// labels), so that some node announces it. Which nodes do is in their
// BerthNodeStatus.
const ServiceConditionAdvertised = "berth.dev/Advertised"

// Reasons of the Advertised condition.
const (
	ReasonAdvertised    = "Advertised"
	ReasonNotAdvertised = "NotAdvertised"
)

// BerthIPPool condition types.
const (
	// PoolConditionReady is True when the pool's spec is valid and it can
	// hand out addresses.
	PoolConditionReady = "Ready"
	// PoolConditionOverlapping is True when some of the pool's addresses
	// also belong to another pool. Such addresses are still handed out at
	// most once.
	PoolConditionOverlapping = "Overlapping"
	// PoolConditionInUse is True while Services hold addresses of the pool;
	// a pool being deleted waits for it to turn False.
	PoolConditionInUse = "InUse"
	// PoolConditionClusterOverlap is present, True, when the cluster uses
	// some of the pool's addresses (a Service range, a pod range, a node's
	// address); those are never handed out.
	PoolConditionClusterOverlap = "ClusterOverlap"
)

// PeerConditionConfigured is the type of a node's condition in its
// session with a BerthBGPPeer (BerthNodeStatus status.sessions): whether
// the node runs the peer's current configuration.
const PeerConditionConfigured = "Configured"

// PoolFinalizer holds back the deletion of a pool until no Service holds
// any of its addresses.
const PoolFinalizer = "berth.dev/pool-in-use"

// Annotations that steer berth-ccm's AWS backend, set on a Service.
const (
	// AnnotationAWSMode picks the AWS load balancer: "nlb" (a Network Load
	// Balancer) or "eip" (an Elastic IP mapped to a node). Without it the
	// cloud config's defaultMode applies.
	AnnotationAWSMode = "berth.dev/aws-mode"
	// AnnotationAWSScheme is "internet-facing" (default) or "internal",
	// for nlb mode.
	AnnotationAWSScheme = "berth.dev/aws-scheme"
	// AnnotationAWSSubnets lists subnet IDs, comma separated, for an NLB;
	// without it subnets are discovered by tag.
	AnnotationAWSSubnets = "berth.dev/aws-subnets"
)

// NodeAnnotationForwardPrefix starts the Node annotations in which
// berth-ccm's eip mode tells the speaker on that node which private
// address it must forward for which Service: the key is the prefix plus
// the address (forward.berth.dev/10.0.1.17), the value is the Service's
// namespace/name. Only cluster administrators and the CCM can write Node
// annotations, so a tenant cannot point another address at its Service.
const NodeAnnotationForwardPrefix = "forward.berth.dev/"

// Node labels and annotations that give a node its own BGP identity (see
// docs/bgp.md, "Per-node identity"). Only cluster administrators can write
// them (and the kubelet, for labels it sets on itself).
const (
	// NodeAnnotationRouterID is the node's BGP router ID, an IPv4 address.
	// Without it the node's first IPv4 InternalIP (else ExternalIP) is
	// used, else, on an IPv6-only node, a stable hash of its name.
	NodeAnnotationRouterID = "bgp.berth.dev/router-id"
	// NodeLabelLocalASN, as a label or an annotation (the label wins), is
	// the node's own AS number: it replaces the localASN of every BerthBGPPeer
	// the node peers with, for designs with an AS per rack.
	NodeLabelLocalASN = "bgp.berth.dev/local-asn"
	// NodeAnnotationSourceIPv4 and NodeAnnotationSourceIPv6 are the local
	// addresses of the node's sessions of that family, for the BerthBGPPeers
	// without sourceAddress.
	NodeAnnotationSourceIPv4 = "bgp.berth.dev/source-ipv4"
	NodeAnnotationSourceIPv6 = "bgp.berth.dev/source-ipv6"
	// NodeAnnotationNextHopIPv4 and NodeAnnotationNextHopIPv6 are the next
	// hops the node announces for its routes of that family, for the
	// BerthBGPPeers without nextHopIPv4 or nextHopIPv6. Without them a route
	// over a session of its own family gets the session's local address,
	// and one over a session of the other family the node's first
	// InternalIP (else ExternalIP) of the route's family.
	NodeAnnotationNextHopIPv4 = "bgp.berth.dev/next-hop-ipv4"
	NodeAnnotationNextHopIPv6 = "bgp.berth.dev/next-hop-ipv6"
)
