package migrate

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/berthlb/berth/api/v1alpha1"
)

// The spec fields of MetalLB's resources that the converter reads,
// written from MetalLB's public CRD schemas (metallb.io v1beta1 and
// v1beta2). One struct serves both BGPPeer versions: v1beta2 only adds
// fields.

type metallbPool struct {
	Addresses         []string `json:"addresses"`
	AutoAssign        *bool    `json:"autoAssign"`
	AvoidBuggyIPs     bool     `json:"avoidBuggyIPs"`
	ServiceAllocation *struct {
		Priority           int32                  `json:"priority"`
		Namespaces         []string               `json:"namespaces"`
		NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
		ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
	} `json:"serviceAllocation"`
}

type metallbPeer struct {
	MyASN                 int64                   `json:"myASN"`
	PeerASN               int64                   `json:"peerASN"`
	DynamicASN            string                  `json:"dynamicASN"`
	PeerAddress           string                  `json:"peerAddress"`
	SourceAddress         string                  `json:"sourceAddress"`
	PeerPort              int32                   `json:"peerPort"`
	HoldTime              *metav1.Duration        `json:"holdTime"`
	KeepaliveTime         *metav1.Duration        `json:"keepaliveTime"`
	ConnectTime           *metav1.Duration        `json:"connectTime"`
	RouterID              string                  `json:"routerID"`
	NodeSelectors         []metav1.LabelSelector  `json:"nodeSelectors"`
	Password              string                  `json:"password"`
	PasswordSecret        *corev1.SecretReference `json:"passwordSecret"`
	BFDProfile            string                  `json:"bfdProfile"`
	EnableGracefulRestart bool                    `json:"enableGracefulRestart"`
	EBGPMultiHop          bool                    `json:"ebgpMultiHop"`
	VRF                   string                  `json:"vrf"`
	DisableMP             bool                    `json:"disableMP"`
	Interface             string                  `json:"interface"`
}

type metallbBGPAdv struct {
	AggregationLength      *int32                 `json:"aggregationLength"`
	AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
	LocalPref              uint32                 `json:"localPref"`
	Communities            []string               `json:"communities"`
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Peers                  []string               `json:"peers"`
}

type metallbL2Adv struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Interfaces             []string               `json:"interfaces"`
}

type metallbCommunity struct {
	Communities []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"communities"`
}

func (c *converter) community(o *unstructured.Unstructured) {
	var s metallbCommunity
	if !c.decodeSpec(o, source(o), &s) {
		return
	}
	for _, e := range s.Communities {
		c.communities[e.Name] = e.Value
	}
}

func (c *converter) metallbPool(o *unstructured.Unstructured, src string) {
	var s metallbPool
	if !c.decodeSpec(o, src, &s) || !c.claim("BerthIPPool", o.GetName(), src) {
		return
	}
	p := &v1alpha1.BerthIPPool{ObjectMeta: objectMeta(o), Spec: v1alpha1.BerthIPPoolSpec{
		AutoAssign:    s.AutoAssign,
		AvoidBuggyIPs: s.AvoidBuggyIPs,
		// MetalLB lets Services with the same allow-shared-ip key share an
		// address whatever their namespaces; so does the converted pool.
		AllowCrossNamespaceSharing: true,
	}}
	for _, a := range s.Addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(strings.TrimSpace(a)))
	}
	if sa := s.ServiceAllocation; sa != nil {
		p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{
			Priority:          sa.Priority,
			Namespaces:        sa.Namespaces,
			NamespaceSelector: c.oneSelector(src, "spec.serviceAllocation.namespaceSelectors", sa.NamespaceSelectors),
			ServiceSelector:   c.oneSelector(src, "spec.serviceAllocation.serviceSelectors", sa.ServiceSelectors),
		}
		if sa.Priority != 0 {
			c.changed(src, "spec.serviceAllocation.priority", "MetalLB tries pools with a serviceAllocation before those without; Berth orders all pools by priority alone (lowest first, default 0): check the order of your pools")
		}
	}
	c.res.Pools = append(c.res.Pools, p)
}

func (c *converter) metallbPeer(o *unstructured.Unstructured, src string) {
	var s metallbPeer
	if !c.decodeSpec(o, src, &s) {
		return
	}
	switch {
	case s.PeerAddress == "" && s.Interface != "":
		c.lost(src, "spec.interface", "an unnumbered session on an interface: Berth's interface peers send IPv4 routes with the node's IPv4 next hop, not the link-local one (RFC 8950) MetalLB's FRR sends; peer not converted: write a BGPPeer with spec.interface if your routers reach the nodes' IPv4 addresses")
		return
	case s.PeerASN == 0 && s.DynamicASN != "":
		c.lost(src, "spec.dynamicASN", "Berth needs the peer's ASN; peer not converted")
		return
	case s.VRF != "":
		c.lost(src, "spec.vrf", "Berth has no VRF sessions; a session in the default VRF would reach another network, so the peer was not converted")
		return
	}
	if !c.claim("BerthBGPPeer", o.GetName(), src) {
		return
	}
	p := &v1alpha1.BerthBGPPeer{ObjectMeta: objectMeta(o), Spec: v1alpha1.BerthBGPPeerSpec{
		Address:       s.PeerAddress,
		ASN:           s.PeerASN,
		LocalASN:      s.MyASN,
		Port:          s.PeerPort,
		SourceAddress: s.SourceAddress,
		NodeSelector:  c.oneSelector(src, "spec.nodeSelectors", s.NodeSelectors),
	}}
	if p.Spec.Port == 179 {
		p.Spec.Port = 0
	}
	hold := seconds(s.HoldTime)
	if hold != nil && *hold < 3 {
		c.lost(src, "spec.holdTime", "%ds: Berth needs at least 3s (a session without keepalives is not supported); left to its default of 90s", *hold)
		hold = nil
	}
	if hold != nil {
		p.Spec.HoldTimeSeconds = hold
	}
	if ka := seconds(s.KeepaliveTime); ka != nil {
		if hold != nil && *hold != 0 && *ka >= *hold {
			c.lost(src, "spec.keepaliveTime", "not below the hold time, which Berth refuses; left to its default (a third of the hold time)")
		} else {
			p.Spec.KeepaliveTimeSeconds = ka
		}
	}
	if s.EBGPMultiHop {
		p.Spec.EBGPMultiHop = ptr(int32(255))
		c.changed(src, "spec.ebgpMultiHop", "carried over as ebgpMultiHop: 255 (the TTL FRR uses for multihop without a number); lower it to the real hop count if you like")
	}
	if s.EnableGracefulRestart {
		p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	}
	c.peerSecrets(src, p, s)
	if s.BFDProfile != "" {
		c.lost(src, "spec.bfdProfile", "Berth has no BFD yet: failures are detected by the hold time only; consider a shorter holdTimeSeconds")
	}
	if s.RouterID != "" {
		c.lost(src, "spec.routerID", "Berth's router ID belongs to the node, not the peer: annotate each Node with bgp.berth.dev/router-id (default: its IPv4 InternalIP, or a hash of its name on IPv6-only nodes)")
	}
	if s.ConnectTime != nil {
		c.lost(src, "spec.connectTime", "Berth keeps GoBGP's connect retry timer")
	}
	c.res.Peers = append(c.res.Peers, p)
}

// peerSecrets carries over MetalLB's TCP MD5 password, which Berth reads
// only from a Secret in its own namespace.
func (c *converter) peerSecrets(src string, p *v1alpha1.BerthBGPPeer, s metallbPeer) {
	switch {
	case s.PasswordSecret != nil:
		p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: s.PasswordSecret.Name, Key: "password"}
		c.changed(src, "spec.passwordSecret", "Berth reads the Secret %q from its own namespace (berth-system), key \"password\": copy it there from namespace %q and add its name to the chart's speaker.bgp.passwordSecrets", s.PasswordSecret.Name, s.PasswordSecret.Namespace)
	case s.Password != "":
		name := p.Name + "-password"
		p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: name, Key: "password"}
		c.changed(src, "spec.password", "Berth takes no password in clear: create the Secret %q in berth-system with the password under key \"password\" (kubectl -n berth-system create secret generic %s --from-literal=password=...) and add its name to the chart's speaker.bgp.passwordSecrets", name, name)
	}
}

// seconds converts a MetalLB duration to whole seconds, rounding up so that
// a hold time never shrinks below what was configured.
func seconds(d *metav1.Duration) *int32 {
	if d == nil {
		return nil
	}
	s := math.Ceil(d.Seconds())
	return ptr(int32(min(s, math.MaxInt32)))
}

func ptr[T any](v T) *T { return &v }

// unique drops repeated entries, keeping the first of each: the CRD
// refuses a list with duplicates, and two names may resolve to one value.
func unique(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *converter) metallbBGPAdv(o *unstructured.Unstructured, src string) {
	var s metallbBGPAdv
	if !c.decodeSpec(o, src, &s) {
		return
	}
	spec := v1alpha1.BerthBGPAdvertisementSpec{
		Peers:               s.Peers,
		AggregationLength:   s.AggregationLength,
		AggregationLengthV6: s.AggregationLengthV6,
	}
	if s.LocalPref != 0 {
		spec.LocalPreference = ptr(int64(s.LocalPref))
	}
	for _, v := range s.Communities {
		c.addCommunity(src, &spec, v)
	}
	spec.Communities, spec.LargeCommunities = unique(spec.Communities), unique(spec.LargeCommunities)
	combos := selectorCombos(s.IPAddressPools, s.IPAddressPoolSelectors, s.NodeSelectors)
	if len(combos) > 1 {
		c.changed(src, "", "split into %d BerthBGPAdvertisements, one per pool list or selector and node selector: MetalLB matches any of them, a Berth advertisement all of its fields", len(combos))
	}
	for i, name := range splitNames(o.GetName(), len(combos)) {
		if !c.claim("BerthBGPAdvertisement", name, src) {
			continue
		}
		a := &v1alpha1.BerthBGPAdvertisement{ObjectMeta: objectMeta(o), Spec: spec}
		a.Name = name
		a.Spec.AdvertisementSelector = combos[i]
		c.res.BGPAdvs = append(c.res.BGPAdvs, a)
	}
}

var (
	standardCommunity = regexp.MustCompile(`^([0-9]{1,5}):([0-9]{1,5})$`)
	largeCommunity    = regexp.MustCompile(`^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`)
)

// addCommunity resolves a MetalLB community (a value, "large:" and a large
// value, or the name of an entry of a Community resource) into spec.
func (c *converter) addCommunity(src string, spec *v1alpha1.BerthBGPAdvertisementSpec, v string) {
	orig := v
	if alias, ok := c.communities[v]; ok {
		v = alias
	}
	if large, ok := strings.CutPrefix(v, "large:"); ok {
		if largeCommunity.MatchString(large) {
			spec.LargeCommunities = append(spec.LargeCommunities, large)
			return
		}
	} else if m := standardCommunity.FindStringSubmatch(v); m != nil && fits16(m[1]) && fits16(m[2]) {
		spec.Communities = append(spec.Communities, v)
		return
	}
	c.lost(src, "spec.communities", "%q is neither a community value nor the name of an entry of a Community resource given to the converter", orig)
}

func fits16(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n <= math.MaxUint16
}

func (c *converter) metallbL2Adv(o *unstructured.Unstructured, src string) {
	var s metallbL2Adv
	if !c.decodeSpec(o, src, &s) {
		return
	}
	combos := selectorCombos(s.IPAddressPools, s.IPAddressPoolSelectors, s.NodeSelectors)
	if len(combos) > 1 {
		c.changed(src, "", "split into %d BerthL2Advertisements, one per pool list or selector and node selector: MetalLB matches any of them, a Berth advertisement all of its fields", len(combos))
	}
	for i, name := range splitNames(o.GetName(), len(combos)) {
		if !c.claim("BerthL2Advertisement", name, src) {
			continue
		}
		a := &v1alpha1.BerthL2Advertisement{ObjectMeta: objectMeta(o), Spec: v1alpha1.BerthL2AdvertisementSpec{
			AdvertisementSelector: combos[i],
			Interfaces:            s.Interfaces,
		}}
		a.Name = name
		c.res.L2Advs = append(c.res.L2Advs, a)
	}
}

// String formats a note as one report line.
func (n Note) String() string {
	field := ""
	if n.Field != "" {
		field = " " + n.Field
	}
	return fmt.Sprintf("%s: %s%s: %s", n.Level, n.Source, field, n.Msg)
}
