package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BerthNodeStatus is what one node's speaker does, written by that speaker
// alone: its BGP sessions, what it announces and what it withholds. There
// is one per node, named after the Node and owned by it, so that the
// garbage collector removes it with its Node. It has no spec: nothing in
// it is configuration.
//
// +genclient
// +genclient:nonNamespaced
// +genclient:onlyVerbs=get,list,watch,apply,delete
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=berth,shortName=bns
// +kubebuilder:printcolumn:name="Eligible",type=boolean,JSONPath=".status.eligible"
// +kubebuilder:printcolumn:name="Sessions Up",type=integer,JSONPath=".status.sessionsEstablished"
// +kubebuilder:printcolumn:name="Sessions",type=integer,JSONPath=".status.sessionsTotal"
// +kubebuilder:printcolumn:name="BGP",type=integer,JSONPath=".status.bgpAddresses",description="addresses announced over BGP"
// +kubebuilder:printcolumn:name="L2",type=integer,JSONPath=".status.l2Addresses",description="addresses answered on layer 2"
// +kubebuilder:printcolumn:name="Withheld",type=integer,JSONPath=".status.withheldAddresses",description="addresses not announced because forwarding failed"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BerthNodeStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is the node's state as its speaker last wrote it.
	// +optional
	Status BerthNodeStatusStatus `json:"status,omitempty"`
}

// BerthNodeStatusStatus is one node's sessions and announcements. It is
// sized for 10,000 Services: per address it lists only what is not the
// same on every node (the layer-2 addresses this node owns, the addresses
// it withholds) and the BGP addresses as ranges.
type BerthNodeStatusStatus struct {
	// Eligible is false when the node announces nothing (cordoned,
	// excluded, not Ready); Reason says why.
	// +optional
	Eligible bool `json:"eligible"`
	// Reason says why the node is not eligible.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// Forwarding says whether the node forwards Service addresses to
	// NodePorts (nftables); when it does, an address is announced only
	// while its forwarding is in place.
	// +optional
	Forwarding bool `json:"forwarding,omitempty"`
	// SessionsEstablished and SessionsTotal count the node's BGP sessions.
	// +optional
	SessionsEstablished int32 `json:"sessionsEstablished"`
	// +optional
	SessionsTotal int32 `json:"sessionsTotal"`
	// BGPAddresses, L2Addresses and WithheldAddresses count the addresses
	// announced over BGP to at least one peer, answered on layer 2, and
	// withheld.
	// +optional
	BGPAddresses int32 `json:"bgpAddresses"`
	// +optional
	L2Addresses int32 `json:"l2Addresses"`
	// +optional
	WithheldAddresses int32 `json:"withheldAddresses"`
	// Sessions are the node's BGP sessions, one per BerthBGPPeer that selects
	// the node.
	// +optional
	// +listType=map
	// +listMapKey=peer
	Sessions []BerthBGPSession `json:"sessions,omitempty"`
	// BGP are the addresses the node announces over BGP to at least one
	// peer, sorted, as single addresses or ranges "first-last" of
	// consecutive addresses.
	// +optional
	// +listType=atomic
	BGP []string `json:"bgp,omitempty"`
	// L2 are the addresses the node answers ARP or NDP for, sorted.
	// +optional
	// +listType=atomic
	L2 []string `json:"l2,omitempty"`
	// Withheld are the addresses the node would announce but does not,
	// because their forwarding is not in place.
	// +optional
	// +listType=map
	// +listMapKey=address
	Withheld []BerthWithheldAddress `json:"withheld,omitempty"`
}

// BerthBGPSession is one node's session with a BerthBGPPeer.
type BerthBGPSession struct {
	// Peer is the BerthBGPPeer's name.
	// +required
	Peer string `json:"peer"`
	// State is the BGP finite-state-machine state, such as Established.
	// +optional
	State string `json:"state,omitempty"`
	// EstablishedSince is when the session last reached Established.
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`
	// PrefixesSent is the number of prefixes announced to the peer.
	// +optional
	PrefixesSent int32 `json:"prefixesSent,omitempty"`
	// PrefixesReceived is the number of prefixes the peer sent.
	// +optional
	PrefixesReceived int32 `json:"prefixesReceived,omitempty"`
	// LastError says why the session last failed, if it did, or why the
	// node cannot configure it.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// Conditions are this node's conditions of the peer: Configured is
	// False while the node cannot apply the peer's current configuration
	// (its password Secret is missing or unreadable, the speaker rejects
	// it, or part of it failed to apply); the node then keeps the last
	// configuration it applied.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BerthWithheldAddress is an address a node does not announce although
// the plan says it should, and why.
type BerthWithheldAddress struct {
	// Address is the Service address.
	// +required
	Address string `json:"address"`
	// Services are the Services ("namespace/name") holding the address.
	// +optional
	// +listType=atomic
	Services []string `json:"services,omitempty"`
	// Reason says why the forwarding for the address is not in place.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// BerthNodeStatusList is a list of BerthNodeStatuses.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BerthNodeStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the nodes' statuses.
	Items []BerthNodeStatus `json:"items"`
}
