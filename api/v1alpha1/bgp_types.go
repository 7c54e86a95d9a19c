package v1alpha1

import (
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BerthBGPPeer is a BGP router that Berth's speakers peer with. The nodes chosen
// by nodeSelector (all nodes when empty) each open a session to it and
// announce the addresses of the Services they serve.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bpeer,categories=berth
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=".spec.address"
// +kubebuilder:printcolumn:name="Interface",type=string,JSONPath=".spec.interface"
// +kubebuilder:printcolumn:name="ASN",type=integer,JSONPath=".spec.asn"
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=".spec.localASN"
// +kubebuilder:printcolumn:name="Sessions Up",type=integer,JSONPath=".status.sessionsEstablished"
// +kubebuilder:printcolumn:name="Sessions",type=integer,JSONPath=".status.sessions"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BerthBGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the peer's configuration.
	// +required
	Spec BerthBGPPeerSpec `json:"spec"`
	// Status reports the peer as a whole; each node's session is in
	// that node's BerthNodeStatus.
	// +optional
	Status BerthBGPPeerStatus `json:"status,omitempty"`
}

// BerthBGPPeerSpec configures a BGP peer.
//
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTimeSeconds) || !has(self.holdTimeSeconds) || self.keepaliveTimeSeconds < self.holdTimeSeconds",message="keepaliveTimeSeconds must be less than holdTimeSeconds"
// +kubebuilder:validation:XValidation:rule="!has(self.ebgpMultiHop) || !has(self.ttlSecurity) || !self.ttlSecurity",message="ebgpMultiHop and ttlSecurity exclude each other: GTSM requires the peer to be directly connected"
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || !has(self.address) || !isIP(self.sourceAddress) || !isIP(self.address) || ip(self.sourceAddress).family() == ip(self.address).family()",message="sourceAddress must be of the same IP family as address"
// +kubebuilder:validation:XValidation:rule="!has(self.bfd) || !has(self.bfd.multihop) || !self.bfd.multihop || !has(self.ttlSecurity) || !self.ttlSecurity",message="bfd.multihop and ttlSecurity exclude each other: GTSM requires the peer to be directly connected"
// +kubebuilder:validation:XValidation:rule="has(self.address) != has(self.interface)",message="exactly one of address and interface must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.interface) || !has(self.sourceAddress)",message="interface and sourceAddress exclude each other: an interface peer's session is from the node's link-local address on that interface"
// +kubebuilder:validation:XValidation:rule="!has(self.interface) || !has(self.ebgpMultiHop)",message="interface and ebgpMultiHop exclude each other: an interface peer is directly connected"
// +kubebuilder:validation:XValidation:rule="!has(self.interface) || !has(self.bfd) || !has(self.bfd.multihop) || !self.bfd.multihop",message="interface and bfd.multihop exclude each other: BFD with an interface peer is single-hop (RFC 5881) to its link-local address"
type BerthBGPPeerSpec struct {
	// Address is the peer's IPv4 or IPv6 address. Exactly one of address
	// and interface is set.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",messageExpression="'\"' + self + '\" is not an IP address'"
	Address string `json:"address,omitempty"`

	// Interface, instead of address, binds the sessions to a network
	// interface of each node (say eth1, a leaf-spine uplink of the same
	// name on every node): each node peers with the router at the other
	// end of its own interface, at the one IPv6 link-local address in
	// the interface's neighbor table (the router's Router Advertisements
	// put it there). Until the interface exists and has exactly one
	// link-local neighbor, the node has no session with the peer and
	// says why in its BerthNodeStatus; it looks again with back-off. The
	// session is IPv6, so it carries IPv6 routes (next hop: the node's
	// link-local address) unless families say otherwise; IPv4 routes
	// carry an IPv4 next hop (see nextHopIPv4) that the router must be
	// able to reach: RFC 8950 extended next hops are not supported.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="interface must be a network interface name"
	Interface string `json:"interface,omitempty"`

	// ASN is the peer's autonomous system number.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	ASN int64 `json:"asn"`

	// LocalASN is the autonomous system number the nodes use towards this
	// peer. Equal to asn means iBGP.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	LocalASN int64 `json:"localASN"`

	// Port is the peer's TCP port.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// SourceAddress is the local address the sessions use; by default the
	// kernel picks one.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",messageExpression="'\"' + self + '\" is not an IP address'"
	SourceAddress string `json:"sourceAddress,omitempty"`

	// Families are the address families the sessions carry (MP-BGP, RFC
	// 4760): with both, one session (over IPv4 or IPv6) announces the
	// Services' IPv4 and IPv6 addresses, each with a next hop of its own
	// family (see nextHopIPv4 and nextHopIPv6). Default: the family of
	// address only.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	Families []BGPFamily `json:"families,omitempty"`

	// NextHopIPv4 is the next hop announced for IPv4 routes, and
	// NextHopIPv6 for IPv6 routes. An explicit address suits a peer that
	// selects a single node (or a next hop the nodes share); the per-node
	// way is the node annotations bgp.berth.dev/next-hop-ipv4 and -ipv6.
	// Without either, routes of the session's family get the session's
	// local address, and routes of the other family the node's first
	// InternalIP (else ExternalIP) of their family.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="nextHopIPv4 must be an IPv4 address"
	NextHopIPv4 string `json:"nextHopIPv4,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 6",message="nextHopIPv6 must be an IPv6 address"
	NextHopIPv6 string `json:"nextHopIPv6,omitempty"`

	// HoldTimeSeconds is the BGP hold time, at least 3. Default 90. A hold
	// time of 0 (RFC 4271: no keepalives) is refused: the embedded GoBGP
	// cannot run a session without them.
	// +optional
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self >= 3",message="holdTimeSeconds must be at least 3 (0, no keepalives, is not supported)"
	HoldTimeSeconds *int32 `json:"holdTimeSeconds,omitempty"`

	// KeepaliveTimeSeconds is the interval between keepalives. Default a
	// third of the hold time.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=21845
	KeepaliveTimeSeconds *int32 `json:"keepaliveTimeSeconds,omitempty"`

	// EBGPMultiHop sets the TTL of the session's packets for a peer that is
	// not directly connected.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	EBGPMultiHop *int32 `json:"ebgpMultiHop,omitempty"`

	// TTLSecurity enables the Generalized TTL Security Mechanism (RFC 5082)
	// for a directly connected peer.
	// +optional
	TTLSecurity bool `json:"ttlSecurity,omitempty"`

	// PasswordSecretRef names a Secret in Berth's namespace whose key holds
	// the TCP MD5 password. The speaker reads that Secret by name only; the
	// password is never logged nor copied into status.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`

	// GracefulRestart keeps the peer's routes while a speaker restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`

	// NodeSelector chooses the nodes that peer with this router; empty
	// means all nodes.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// MaxReceivedPrefixes is how many prefixes of one address family the
	// router may send a node before the node closes the session (Cease,
	// Maximum Number of Prefixes Reached) and tries again later. Berth
	// accepts no route, but keeps what a router sends until the limit
	// closes the session: about 400 bytes each. It must exceed the number
	// of Service addresses the router sends back to the nodes. Default
	// 20000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxReceivedPrefixes *int32 `json:"maxReceivedPrefixes,omitempty"`

	// BFD, if set, runs a BFD session with the peer from each node, which
	// takes the BGP session down as soon as it finds the path down.
	// +optional
	BFD *BFDProfile `json:"bfd,omitempty"`
}

// BGPFamily is an address family a BGP session carries: IPv4 or IPv6
// unicast.
// +kubebuilder:validation:Enum=IPv4;IPv6
type BGPFamily string

// The address families of BerthBGPPeerSpec.Families.
const (
	BGPFamilyIPv4 BGPFamily = "IPv4"
	BGPFamilyIPv6 BGPFamily = "IPv6"
)

// Carries reports whether the peer's sessions carry IPv4 (v4) or IPv6
// routes: Families when set, else the family of its address (IPv6 for an
// interface peer, whose sessions are over IPv6 link-local addresses).
func (s *BerthBGPPeerSpec) Carries(v4 bool) bool {
	if len(s.Families) == 0 && s.Interface != "" {
		return !v4
	}
	if len(s.Families) == 0 {
		a, err := netip.ParseAddr(s.Address)
		return err == nil && a.Is4() == v4
	}
	want := BGPFamilyIPv6
	if v4 {
		want = BGPFamilyIPv4
	}
	return slices.Contains(s.Families, want)
}

// SecretKeyRef names a key of a Secret in Berth's own namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// GracefulRestart configures BGP graceful restart (RFC 4724).
type GracefulRestart struct {
	// Enabled turns graceful restart on.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// RestartTimeSeconds is how long the router keeps routes while the
	// speaker restarts. Default 120.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4095
	RestartTimeSeconds *int32 `json:"restartTimeSeconds,omitempty"`
}

// BerthBGPPeerStatus reports the peer's state as a whole. Each node's session
// with the peer is in that node's BerthNodeStatus, written by its speaker
// alone, so that speakers never contend for one object.
type BerthBGPPeerStatus struct {
	// Sessions counts the nodes with a session to the peer, and
	// SessionsEstablished those whose session is Established, from the
	// nodes' BerthNodeStatuses; the controller writes them.
	// +optional
	Sessions int32 `json:"sessions"`
	// +optional
	SessionsEstablished int32 `json:"sessionsEstablished"`
	// Conditions of the peer as a whole.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BerthBGPPeerList is a list of BerthBGPPeers.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BerthBGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the peers.
	Items []BerthBGPPeer `json:"items"`
}
