package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdvertisementSelector chooses what an advertisement applies to. Every
// criterion given must match; an empty selector matches everything.
type AdvertisementSelector struct {
	// IPPools names the pools whose addresses are advertised.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	IPPools []string `json:"ipPools,omitempty"`
	// IPPoolSelector selects the pools by label.
	// +optional
	IPPoolSelector *metav1.LabelSelector `json:"ipPoolSelector,omitempty"`
	// ServiceSelector selects the Services by label. Whoever may edit a
	// Service may label it, so on its own it lets every tenant opt in;
	// set namespaces to decide who may.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// Namespaces, when set, limits the advertisement to Services in these
	// namespaces, whatever their labels: the operator's say over who may
	// use an advertisement (an internet-facing one, say), as a pool's
	// serviceAllocation.namespaces is over who may use its addresses. A
	// Service's labels (serviceSelector) can narrow the choice within
	// these namespaces, never widen it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceSelector, when set, limits the advertisement to Services in
	// namespaces whose labels it matches, with the same say as
	// namespaces (both must admit a Service when both are set). Only
	// whoever may label Namespaces decides; an invalid selector admits
	// nothing.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// NodeSelector selects the nodes that announce.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// BerthBGPAdvertisement says which Service addresses the speakers announce over
// BGP, to which peers, and with which attributes.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bbgpadv,categories=berth
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=".spec.ipPools"
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=".spec.peers"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BerthBGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the advertisement's configuration.
	// +required
	Spec BerthBGPAdvertisementSpec `json:"spec"`
	// Status reports problems the schema cannot catch.
	// +optional
	Status AdvertisementStatus `json:"status,omitempty"`
}

// BerthBGPAdvertisementSpec configures a BerthBGPAdvertisement.
type BerthBGPAdvertisementSpec struct {
	AdvertisementSelector `json:",inline"`

	// Peers names the BerthBGPPeers to announce to; empty means all.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Peers []string `json:"peers,omitempty"`

	// Communities are standard BGP communities, as "ASN:value" (each part
	// 0 to 65535) or a well-known name: no-export, no-advertise,
	// no-export-subconfed, no-peer.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=24
	// +kubebuilder:validation:items:Pattern=`^([0-9]{1,5}:[0-9]{1,5}|no-export|no-advertise|no-export-subconfed|no-peer)$`
	// +kubebuilder:validation:XValidation:rule="self.all(c, !c.contains(':') || (int(c.substring(0, c.indexOf(':'))) <= 65535 && int(c.substring(c.indexOf(':') + 1)) <= 65535))",message="each part of a community must be at most 65535"
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities are BGP large communities, as
	// "global:local1:local2" (each part 0 to 4294967295).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`
	LargeCommunities []string `json:"largeCommunities,omitempty"`

	// LocalPreference is sent to iBGP peers.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPreference *int64 `json:"localPreference,omitempty"`

	// AggregationLength announces IPv4 addresses as prefixes of this length
	// instead of /32. It must not be shorter than the pool's own prefix.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the same for IPv6 (default 128).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// AdvertisementStatus reports what the schema cannot check, such as an
// aggregation length shorter than a pool's prefix or a peer that does not
// exist.
type AdvertisementStatus struct {
	// Conditions: Valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BerthBGPAdvertisementList is a list of BerthBGPAdvertisements.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BerthBGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the advertisements.
	Items []BerthBGPAdvertisement `json:"items"`
}

// BerthL2Advertisement says which Service addresses the speakers announce on
// layer 2 (ARP for IPv4, NDP for IPv6), from which nodes and interfaces.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bl2adv,categories=berth
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=".spec.ipPools"
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=".spec.interfaces"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BerthL2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the advertisement's configuration.
	// +required
	Spec BerthL2AdvertisementSpec `json:"spec"`
	// Status reports problems the schema cannot catch.
	// +optional
	Status AdvertisementStatus `json:"status,omitempty"`
}

// BerthL2AdvertisementSpec configures a BerthL2Advertisement.
type BerthL2AdvertisementSpec struct {
	AdvertisementSelector `json:",inline"`

	// Interfaces lists the interfaces to answer on, by name or by a shell
	// pattern such as "eth*"; empty means every interface.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_.:@*?\[\]-]+$`
	Interfaces []string `json:"interfaces,omitempty"`
}

// BerthL2AdvertisementList is a list of BerthL2Advertisements.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BerthL2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the advertisements.
	Items []BerthL2Advertisement `json:"items"`
}
