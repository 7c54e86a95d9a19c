package v1alpha1

// BFDProfile turns on Bidirectional Forwarding Detection (RFC 5880) for a
// peer's sessions: each node runs a BFD session next to its BGP session,
// and takes the BGP session down as soon as BFD finds the path down, in
// multiplier times the negotiated interval instead of the hold time. The
// router must run BFD for the same address (FRR: "neighbor X bfd"). Echo
// mode is never used.
type BFDProfile struct {
	// MinTxMillis is the desired interval between the node's packets, in
	// milliseconds, once the session is up. Default 300.
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	MinTxMillis *int32 `json:"minTxMillis,omitempty"`

	// MinRxMillis is the shortest interval between the router's packets
	// the node accepts, in milliseconds. Default 300.
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	MinRxMillis *int32 `json:"minRxMillis,omitempty"`

	// Multiplier is how many intervals without a packet declare the path
	// down. Default 3.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	Multiplier *int32 `json:"multiplier,omitempty"`

	// Multihop uses multihop BFD (RFC 5883, UDP port 4784) for a router
	// that is not directly connected; otherwise single-hop BFD (RFC 5881,
	// port 3784, packets accepted only with TTL 255).
	// +optional
	Multihop bool `json:"multihop,omitempty"`
}
