package migrate

import (
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
)

// The spec fields of Cilium's resources that the converter reads, written
// from Cilium's public CRD schemas (cilium.io v2alpha1 and v2).

type ciliumBlock struct {
	CIDR  string `json:"cidr"`
	Start string `json:"start"`
	Stop  string `json:"stop"`
}

type ciliumPoolSpec struct {
	Blocks            []ciliumBlock         `json:"blocks"`
	CIDRs             []ciliumBlock         `json:"cidrs"` // the v2alpha1 name of blocks
	ServiceSelector   *metav1.LabelSelector `json:"serviceSelector"`
	Disabled          bool                  `json:"disabled"`
	AllowFirstLastIPs string                `json:"allowFirstLastIPs"`
}

type ciliumClusterConfig struct {
	NodeSelector *metav1.LabelSelector `json:"nodeSelector"`
	BGPInstances []struct {
		Name      string `json:"name"`
		LocalASN  *int64 `json:"localASN"`
		LocalPort *int32 `json:"localPort"`
		Peers     []struct {
			Name          string `json:"name"`
			PeerAddress   string `json:"peerAddress"`
			PeerASN       int64  `json:"peerASN"`
			AutoDiscovery any    `json:"autoDiscovery"`
			PeerConfigRef *struct {
				Name string `json:"name"`
			} `json:"peerConfigRef"`
		} `json:"peers"`
	} `json:"bgpInstances"`
}

type ciliumPeerConfig struct {
	Transport *struct {
		LocalPort *int32 `json:"localPort"`
		PeerPort  *int32 `json:"peerPort"`
	} `json:"transport"`
	Timers *struct {
		ConnectRetryTimeSeconds *int32 `json:"connectRetryTimeSeconds"`
		HoldTimeSeconds         *int32 `json:"holdTimeSeconds"`
		KeepAliveTimeSeconds    *int32 `json:"keepAliveTimeSeconds"`
	} `json:"timers"`
	AuthSecretRef   *string `json:"authSecretRef"`
	GracefulRestart *struct {
		Enabled            bool   `json:"enabled"`
		RestartTimeSeconds *int32 `json:"restartTimeSeconds"`
	} `json:"gracefulRestart"`
	EBGPMultihop *int32 `json:"ebgpMultihop"`
	Families     []struct {
		AFI            string                `json:"afi"`
		SAFI           string                `json:"safi"`
		Advertisements *metav1.LabelSelector `json:"advertisements"`
	} `json:"families"`
}

type ciliumAdvSpec struct {
	Advertisements []struct {
		AdvertisementType string `json:"advertisementType"`
		Service           *struct {
			Addresses []string `json:"addresses"`
		} `json:"service"`
		Selector   *metav1.LabelSelector `json:"selector"`
		Attributes *struct {
			Communities *struct {
				Standard  []string `json:"standard"`
				WellKnown []string `json:"wellKnown"`
				Large     []string `json:"large"`
			} `json:"communities"`
			LocalPreference *int64 `json:"localPreference"`
		} `json:"attributes"`
	} `json:"advertisements"`
}

// ciliumBGP collects Cilium's BGP resources: a peer is described by a
// CiliumBGPClusterConfig together with the CiliumBGPPeerConfig it names,
// and what it announces by the CiliumBGPAdvertisements its families
// select, so they are converted together once all are read.
type ciliumBGP struct {
	clusters []named[ciliumClusterConfig]
	peers    map[string]named[ciliumPeerConfig]
	advs     []named[ciliumAdvSpec]
}

type named[T any] struct {
	src    string
	name   string
	labels labels.Set
	spec   T
}

func (c *converter) ciliumPool(o *unstructured.Unstructured, src string) {
	var s ciliumPoolSpec
	if !c.decodeSpec(o, src, &s) || !c.claim("BerthIPPool", o.GetName(), src) {
		return
	}
	p := &v1alpha1.BerthIPPool{ObjectMeta: objectMeta(o)}
	for _, b := range append(s.Blocks, s.CIDRs...) {
		switch {
		case b.CIDR != "":
			p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(b.CIDR))
			if s.AllowFirstLastIPs == "No" {
				p.Spec.Reserved = append(p.Spec.Reserved, firstLast(b.CIDR)...)
			}
		case b.Stop != "":
			p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(b.Start+"-"+b.Stop))
		case b.Start != "":
			p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(b.Start))
		}
	}
	if s.Disabled {
		p.Spec.AutoAssign = ptr(false)
		c.changed(src, "spec.disabled", "carried over as autoAssign: false: Berth still gives the pool's addresses to Services that name the pool or ask for one of its addresses, where Cilium gives none")
	}
	if sel := s.ServiceSelector; sel != nil {
		p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{}
		p.Spec.ServiceAllocation.ServiceSelector = c.ciliumServiceSelector(src, sel, p)
	}
	c.res.Pools = append(c.res.Pools, p)
}

// Labels Cilium gives every Service for its selectors' sake.
const (
	ciliumNamespaceLabel = "io.kubernetes.service.namespace"
	ciliumNameLabel      = "io.kubernetes.service.name"
)

// ciliumServiceSelector moves the namespace Cilium's selector asks for into
// serviceAllocation.namespaces and returns the rest, reporting a selector
// on the Service's name, which Berth cannot express.
func (c *converter) ciliumServiceSelector(src string, sel *metav1.LabelSelector, p *v1alpha1.BerthIPPool) *metav1.LabelSelector {
	out := sel.DeepCopy()
	if ns, ok := out.MatchLabels[ciliumNamespaceLabel]; ok {
		p.Spec.ServiceAllocation.Namespaces = []string{ns}
		delete(out.MatchLabels, ciliumNamespaceLabel)
	}
	out.MatchExpressions = slices.DeleteFunc(out.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
		if e.Key == ciliumNamespaceLabel && e.Operator == metav1.LabelSelectorOpIn && p.Spec.ServiceAllocation.Namespaces == nil {
			p.Spec.ServiceAllocation.Namespaces = e.Values
			return true
		}
		return false
	})
	if _, ok := out.MatchLabels[ciliumNameLabel]; ok || slices.ContainsFunc(out.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
		return e.Key == ciliumNameLabel || e.Key == ciliumNamespaceLabel
	}) {
		c.changed(src, "spec.serviceSelector", "selects on %s or %s, labels Cilium sets on every Service and Berth does not: label those Services yourself, or the pool serves none of them", ciliumNameLabel, ciliumNamespaceLabel)
	}
	if len(out.MatchLabels) == 0 && len(out.MatchExpressions) == 0 {
		return nil
	}
	return out
}

// firstLast returns the first and last address of a CIDR, which Cilium
// keeps out of allocation when allowFirstLastIPs is "No" (except in /31,
// /32, /127 and /128, which would be left empty).
func firstLast(cidr string) []v1alpha1.AddressRange {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || pfx.Bits() >= pfx.Addr().BitLen()-1 {
		return nil
	}
	first := pfx.Masked().Addr()
	last := first.As16()
	host := pfx.Addr().BitLen() - pfx.Bits()
	off := 16 - pfx.Addr().BitLen()/8
	for i := 15; i >= off && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	l := netip.AddrFrom16(last)
	if first.Is4() {
		l = l.Unmap()
	}
	return []v1alpha1.AddressRange{v1alpha1.AddressRange(first.String()), v1alpha1.AddressRange(l.String())}
}

func (c *converter) collectCiliumBGP(o *unstructured.Unstructured, src string) {
	switch o.GetKind() {
	case "CiliumBGPClusterConfig":
		n := named[ciliumClusterConfig]{src: src, name: o.GetName(), labels: o.GetLabels()}
		if c.decodeSpec(o, src, &n.spec) {
			c.cilium.clusters = append(c.cilium.clusters, n)
		}
	case "CiliumBGPPeerConfig":
		n := named[ciliumPeerConfig]{src: src, name: o.GetName(), labels: o.GetLabels()}
		if c.decodeSpec(o, src, &n.spec) {
			if c.cilium.peers == nil {
				c.cilium.peers = map[string]named[ciliumPeerConfig]{}
			}
			c.cilium.peers[n.name] = n
		}
	case "CiliumBGPAdvertisement":
		n := named[ciliumAdvSpec]{src: src, name: o.GetName(), labels: o.GetLabels()}
		if c.decodeSpec(o, src, &n.spec) {
			c.cilium.advs = append(c.cilium.advs, n)
		}
	}
}
