package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddressRange is one entry of a BerthIPPool's addresses or reserved list: a
// CIDR ("198.51.100.0/24", "2001:db8::/64"), an inclusive range of one family
// ("198.51.100.10-198.51.100.20") or a single address. The API server rejects
// malformed entries, CIDRs with host bits set, ranges that mix families and
// reversed ranges, naming the entry in its message.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=90
// +kubebuilder:validation:XValidation:rule="isIP(self) || isCIDR(self) || (self.contains('-') && self.indexOf('-') == self.lastIndexOf('-') && isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim()))",messageExpression="'\"' + self + '\" is not an IP address, a CIDR such as 198.51.100.0/24, or a range such as 198.51.100.10-198.51.100.20'"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).ip() == cidr(self).masked().ip()",messageExpression="'\"' + self + '\" has host bits set; write the network address of the prefix instead'"
// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.indexOf('-') == self.lastIndexOf('-') && isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim())) || ip(self.substring(0, self.indexOf('-')).trim()).family() == ip(self.substring(self.indexOf('-') + 1).trim()).family()",messageExpression="'range \"' + self + '\" mixes IPv4 and IPv6'"
// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.indexOf('-') == self.lastIndexOf('-') && isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim())) || ip(self.substring(0, self.indexOf('-')).trim()).family() != ip(self.substring(self.indexOf('-') + 1).trim()).family() || ip(self.substring(0, self.indexOf('-')).trim()) == ip(self.substring(self.indexOf('-') + 1).trim()) || [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128].exists(l, l <= (ip(self.substring(0, self.indexOf('-')).trim()).family() == 4 ? 32 : 128) && cidr(self.substring(0, self.indexOf('-')).trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][l - 1]).containsIP(self.substring(self.indexOf('-') + 1).trim()) && !cidr(self.substring(0, self.indexOf('-')).trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][l]).containsIP(self.substring(self.indexOf('-') + 1).trim()) && cidr(self.substring(0, self.indexOf('-')).trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][l]).masked().ip() == cidr(self.substring(0, self.indexOf('-')).trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][l - 1]).masked().ip())",messageExpression="'range \"' + self + '\" is reversed: its first address is greater than its last'"
type AddressRange string

// IPMode says how traffic to a load-balancer address reaches the nodes; it is
// copied into status.loadBalancer.ingress[].ipMode of each Service.
//
// +kubebuilder:validation:Enum=VIP;Proxy
type IPMode string

const (
	// IPModeVIP means packets arrive with the load-balancer address as
	// destination, and the node's proxy handles them as such.
	IPModeVIP IPMode = "VIP"
	// IPModeProxy means the load balancer delivers packets to the node's
	// address (as a proxy does), so the cluster's proxy must not short-cut
	// in-cluster traffic to the address.
	IPModeProxy IPMode = "Proxy"
)

// BerthIPPool is a set of external addresses that Berth hands out to Services of
// type LoadBalancer. Pools are cluster-scoped and are tenant boundaries: a
// pool with a serviceAllocation serves only the Services it matches.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bpool,categories=berth
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=".spec.addresses"
// +kubebuilder:printcolumn:name="Used/Total",type=string,JSONPath=".status.usage"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type=='Ready')].status"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BerthIPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the pool's desired configuration.
	// +required
	Spec BerthIPPoolSpec `json:"spec"`
	// Status is what the controller observed and decided.
	// +optional
	Status BerthIPPoolStatus `json:"status,omitempty"`
}

// BerthIPPoolSpec configures a BerthIPPool. The API server refuses address entries
// inside special-purpose blocks (unspecified, loopback, link-local,
// multicast, broadcast), and entries spanning them (0.0.0.0/0, ::/0,
// 0.0.0.0/1...) unless allowCatchAll is set. A range whose ends lie outside
// such a block but which spans one (126.0.0.0-128.0.0.0) is caught by the
// controller instead: the pool gets Ready False with reason InvalidSpec.
//
// +kubebuilder:validation:XValidation:rule="has(self.allowCatchAll) && self.allowCatchAll || !self.addresses.exists(a, (['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '255.255.255.255/32', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].exists(s, ((isIP(a) && cidr(s).containsIP(a)) || (isCIDR(a) && (cidr(s).containsCIDR(a) || cidr(a).containsCIDR(s))) || ((a.contains('-') && a.indexOf('-') == a.lastIndexOf('-') && isIP(a.substring(0, a.indexOf('-')).trim()) && isIP(a.substring(a.indexOf('-') + 1).trim())) && (cidr(s).containsIP(a.substring(0, a.indexOf('-')).trim()) || cidr(s).containsIP(a.substring(a.indexOf('-') + 1).trim()))))) && !['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '255.255.255.255/32', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].exists(s, ((isIP(a) && cidr(s).containsIP(a)) || (isCIDR(a) && cidr(s).containsCIDR(a)) || ((a.contains('-') && a.indexOf('-') == a.lastIndexOf('-') && isIP(a.substring(0, a.indexOf('-')).trim()) && isIP(a.substring(a.indexOf('-') + 1).trim())) && cidr(s).containsIP(a.substring(0, a.indexOf('-')).trim()) && cidr(s).containsIP(a.substring(a.indexOf('-') + 1).trim()))))))",message="an entry of addresses spans special-purpose blocks (unspecified, loopback, link-local, multicast, broadcast), as 0.0.0.0/0 and ::/0 do; narrow it, or set allowCatchAll: true to accept such catch-all entries (the special-purpose addresses in them are still never handed out)"
type BerthIPPoolSpec struct {
	// Addresses lists the CIDRs, ranges and single addresses of the pool.
	// IPv4 and IPv6 may be mixed in one pool.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=48
	// +kubebuilder:validation:items:XValidation:rule="!['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '255.255.255.255/32', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].exists(s, ((isIP(self) && cidr(s).containsIP(self)) || (isCIDR(self) && cidr(s).containsCIDR(self)) || ((self.contains('-') && self.indexOf('-') == self.lastIndexOf('-') && isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim())) && cidr(s).containsIP(self.substring(0, self.indexOf('-')).trim()) && cidr(s).containsIP(self.substring(self.indexOf('-') + 1).trim()))))",messageExpression="'\"' + self + '\" lies inside a special-purpose block (unspecified, loopback, link-local such as 169.254.169.254 or fe80::/10, multicast, broadcast), whose addresses are never handed out'"
	Addresses []AddressRange `json:"addresses"`

	// Reserved lists addresses of the pool that are never handed out, such
	// as gateways and routers.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=48
	Reserved []AddressRange `json:"reserved,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some
	// old client networks drop.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// AutoAssign, when false, keeps the pool for Services that ask for it by
	// name (annotation berth.dev/pool) or ask for one of its addresses.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// ServiceAllocation restricts which Services may use the pool and sets
	// its priority. Without it, every Service may use the pool.
	// +optional
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`

	// IPMode is written into each ingress entry of the Services served from
	// this pool.
	// +optional
	// +kubebuilder:default=VIP
	IPMode IPMode `json:"ipMode,omitempty"`

	// AllowCatchAll accepts address entries that span special-purpose
	// blocks (unspecified, loopback, link-local, multicast, broadcast),
	// such as 0.0.0.0/0 or ::/0. Off by default, so that a typo cannot
	// make a pool of everything. The special-purpose addresses inside such
	// entries are never handed out either way, and entries that lie wholly
	// inside a special-purpose block are refused even with it.
	// +optional
	AllowCatchAll bool `json:"allowCatchAll,omitempty"`

	// AllowCrossNamespaceSharing lets Services in different namespaces share
	// one address through a common sharing key. Off by default, so that a
	// tenant cannot attach to another tenant's address.
	// +optional
	AllowCrossNamespaceSharing bool `json:"allowCrossNamespaceSharing,omitempty"`
}

// ServiceAllocation says which Services a pool serves and how much it is
// preferred. All given criteria must match. The restriction also holds for
// Services that request a specific address.
type ServiceAllocation struct {
	// Priority orders the pools a Service may use; lower is preferred.
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// Namespaces lists the namespaces whose Services may use the pool.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector selects, by label, the namespaces whose Services may
	// use the pool.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector selects, by label, the Services that may use the pool.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// BerthIPPoolStatus is what the controller reports about a pool.
type BerthIPPoolStatus struct {
	// ObservedGeneration is the generation of the spec this status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Overlapping and InUse.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// IPv4 counts the pool's IPv4 addresses, if it has any.
	// +optional
	IPv4 *AddressCounts `json:"ipv4,omitempty"`

	// IPv6 counts the pool's IPv6 addresses, if it has any.
	// +optional
	IPv6 *AddressCounts `json:"ipv6,omitempty"`

	// Usage summarises the counts as used/total for kubectl, for example
	// "3/254" or "3/254 v4, 1/18446744073709551616 v6".
	// +optional
	Usage string `json:"usage,omitempty"`

	// Holders lists, in name order, up to 100 Services ("namespace/name")
	// that hold addresses of this pool; HolderCount gives the full number.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Holders []string `json:"holders,omitempty"`

	// HolderCount is the number of Services holding addresses of the pool.
	// +optional
	HolderCount int32 `json:"holderCount,omitempty"`
}

// AddressCounts are exact address counts of one family. They are decimal
// strings because a large IPv6 pool holds more addresses than any integer
// type of the API can carry (a /48 has 2^80).
type AddressCounts struct {
	// Total is the number of addresses that can be handed out: the pool's
	// addresses minus reserved ones (and minus .0/.255 with avoidBuggyIPs).
	Total string `json:"total"`
	// Used is the number of addresses held by Services; a shared address
	// counts once.
	Used string `json:"used"`
	// Free is Total minus Used.
	Free string `json:"free"`
}

// BerthIPPoolList is a list of BerthIPPools.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BerthIPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the pools.
	Items []BerthIPPool `json:"items"`
}
