package migrate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// ciliumWellKnown maps Cilium's well-known community names to Berth's.
var ciliumWellKnown = map[string]string{
	"no-export":    "no-export",
	"no-advertise": "no-advertise",
	"local-as":     "no-export-subconfed",
	"no-peer":      "no-peer",
}

// ciliumBGP converts the collected Cilium BGP resources: one BerthBGPPeer per
// peer of every instance of every CiliumBGPClusterConfig, one
// BerthBGPAdvertisement per Service entry of every CiliumBGPAdvertisement, sent
// to the peers whose families select it.
func (c *converter) ciliumBGP() {
	selecting := map[string][]*metav1.LabelSelector{} // Berth peer name to its families' advertisement selectors
	var order []string
	for _, cc := range c.cilium.clusters {
		for _, inst := range cc.spec.BGPInstances {
			if inst.LocalPort != nil {
				c.lost(cc.src, "spec.bgpInstances.localPort", "Berth's speaker opens the sessions and does not listen")
			}
			for _, peer := range inst.Peers {
				p := c.ciliumPeer(cc, inst.Name, inst.LocalASN, peer.Name, peer.PeerAddress, peer.PeerASN, peer.PeerConfigRef)
				if p == nil {
					continue
				}
				order = append(order, p.Name)
				if ref := peer.PeerConfigRef; ref != nil {
					for _, f := range c.cilium.peers[ref.Name].spec.Families {
						selecting[p.Name] = append(selecting[p.Name], f.Advertisements)
					}
				}
			}
		}
	}
	for _, adv := range c.cilium.advs {
		var peers []string
		for _, name := range order {
			if slices.ContainsFunc(selecting[name], func(s *metav1.LabelSelector) bool { return selects(s, adv) }) {
				peers = append(peers, name)
			}
		}
		if len(peers) == 0 {
			c.lost(adv.src, "", "no family of a converted peer selects it, so it announces nothing")
			continue
		}
		c.ciliumAdv(adv, peers)
	}
}

// selects reports whether a family's advertisement selector picks adv; Cilium
// selects nothing without a selector.
func selects(s *metav1.LabelSelector, adv named[ciliumAdvSpec]) bool {
	if s == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(adv.labels)
}

func (c *converter) ciliumPeer(cc named[ciliumClusterConfig], inst string, localASN *int64, name, addr string, asn int64,
	ref *struct {
		Name string `json:"name"`
	},
) *v1alpha1.BerthBGPPeer {
	where := fmt.Sprintf("spec.bgpInstances[%s].peers[%s]", inst, name)
	switch {
	case addr == "":
		c.lost(cc.src, where, "no peerAddress (auto-discovery): Berth needs the peer's address; peer not converted")
		return nil
	case localASN == nil:
		c.lost(cc.src, where, "the instance has no localASN: Berth needs one; peer not converted")
		return nil
	}
	if !c.claim("BerthBGPPeer", name, cc.src) {
		return nil
	}
	p := &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BerthBGPPeerSpec{
		Address: addr, ASN: asn, LocalASN: *localASN, NodeSelector: cc.spec.NodeSelector,
	}}
	if ref != nil {
		pc, ok := c.cilium.peers[ref.Name]
		if !ok {
			c.lost(cc.src, where+".peerConfigRef", "CiliumBGPPeerConfig %q was not given to the converter: the peer gets Berth's defaults and announces nothing", ref.Name)
		} else {
			c.applyCiliumPeerConfig(pc, p)
		}
	}
	c.res.Peers = append(c.res.Peers, p)
	return p
}

func (c *converter) applyCiliumPeerConfig(pc named[ciliumPeerConfig], p *v1alpha1.BerthBGPPeer) {
	s := pc.spec
	if t := s.Transport; t != nil {
		if t.PeerPort != nil && *t.PeerPort != 179 {
			p.Spec.Port = *t.PeerPort
		}
		if t.LocalPort != nil {
			c.lost(pc.src, "spec.transport.localPort", "Berth's speaker opens the sessions and does not listen")
		}
	}
	if t := s.Timers; t != nil {
		p.Spec.HoldTimeSeconds = t.HoldTimeSeconds
		if h := t.HoldTimeSeconds; h != nil && *h < 3 {
			c.lost(pc.src, "spec.timers.holdTimeSeconds", "%ds: Berth needs at least 3s (a session without keepalives is not supported); left to its default of 90s", *h)
			p.Spec.HoldTimeSeconds = nil
		}
		p.Spec.KeepaliveTimeSeconds = t.KeepAliveTimeSeconds
		if t.ConnectRetryTimeSeconds != nil {
			c.lost(pc.src, "spec.timers.connectRetryTimeSeconds", "Berth keeps GoBGP's connect retry timer")
		}
	}
	if s.AuthSecretRef != nil && *s.AuthSecretRef != "" {
		p.Spec.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: *s.AuthSecretRef, Key: "password"}
		c.changed(pc.src, "spec.authSecretRef", "Berth reads the Secret %q from its own namespace (berth-system), key \"password\": copy it there from Cilium's BGP secrets namespace (kube-system by default) and add its name to the chart's speaker.bgp.passwordSecrets", *s.AuthSecretRef)
	}
	if g := s.GracefulRestart; g != nil && g.Enabled {
		p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTimeSeconds: g.RestartTimeSeconds}
	}
	if s.EBGPMultihop != nil && *s.EBGPMultihop > 1 {
		p.Spec.EBGPMultiHop = s.EBGPMultihop
	}
	fams := map[v1alpha1.BGPFamily]bool{}
	for _, f := range s.Families {
		if f.SAFI != "" && f.SAFI != "unicast" {
			c.lost(pc.src, "spec.families", "SAFI %q: Berth announces unicast routes only", f.SAFI)
			continue
		}
		switch f.AFI {
		case "ipv4":
			fams[v1alpha1.BGPFamilyIPv4] = true
		case "ipv6":
			fams[v1alpha1.BGPFamilyIPv6] = true
		}
	}
	// Both families over one session (MP-BGP); one family is the default
	// when it is the session's own.
	if len(fams) == 2 {
		p.Spec.Families = []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
	} else if fams[v1alpha1.BGPFamilyIPv6] != strings.Contains(p.Spec.Address, ":") && len(fams) == 1 {
		for f := range fams {
			p.Spec.Families = []v1alpha1.BGPFamily{f}
		}
	}
}

func (c *converter) ciliumAdv(adv named[ciliumAdvSpec], peers []string) {
	var out []*v1alpha1.BerthBGPAdvertisement
	for i, e := range adv.spec.Advertisements {
		field := fmt.Sprintf("spec.advertisements[%d]", i)
		if e.AdvertisementType != "Service" {
			c.lost(adv.src, field, "advertisementType %s: Berth announces only the addresses of LoadBalancer Services", e.AdvertisementType)
			continue
		}
		if e.Service == nil || !slices.Contains(e.Service.Addresses, "LoadBalancerIP") {
			c.lost(adv.src, field+".service.addresses", "does not include LoadBalancerIP, the only addresses Berth announces")
			continue
		}
		for _, a := range e.Service.Addresses {
			if a != "LoadBalancerIP" {
				c.lost(adv.src, field+".service.addresses", "%s: Berth announces only LoadBalancer addresses", a)
			}
		}
		if e.Selector == nil {
			c.lost(adv.src, field+".selector", "no selector: in Cilium this selects no Service; a Berth advertisement without one would announce every Service, so it was not converted")
			continue
		}
		a := &v1alpha1.BerthBGPAdvertisement{Spec: v1alpha1.BerthBGPAdvertisementSpec{Peers: peers}}
		a.Spec.ServiceSelector = e.Selector
		if at := e.Attributes; at != nil {
			a.Spec.LocalPreference = at.LocalPreference
			if cm := at.Communities; cm != nil {
				c.ciliumCommunities(adv.src, field, &a.Spec, cm.Standard, cm.WellKnown, cm.Large)
			}
		}
		a.Spec.Communities, a.Spec.LargeCommunities = unique(a.Spec.Communities), unique(a.Spec.LargeCommunities)
		out = append(out, a)
	}
	for i, name := range splitNames(adv.name, len(out)) {
		if c.claim("BerthBGPAdvertisement", name, adv.src) {
			out[i].Name, out[i].Labels = name, adv.labels
			c.res.BGPAdvs = append(c.res.BGPAdvs, out[i])
		}
	}
}

func (c *converter) ciliumCommunities(src, field string, spec *v1alpha1.BerthBGPAdvertisementSpec, standard, wellKnown, large []string) {
	for _, v := range standard {
		// Cilium also takes one 32-bit number.
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			v = fmt.Sprintf("%d:%d", n>>16, n&0xffff)
		}
		if m := standardCommunity.FindStringSubmatch(v); m != nil && fits16(m[1]) && fits16(m[2]) {
			spec.Communities = append(spec.Communities, v)
		} else {
			c.lost(src, field+".attributes.communities.standard", "%q is not a standard community", v)
		}
	}
	for _, v := range wellKnown {
		if b, ok := ciliumWellKnown[v]; ok {
			spec.Communities = append(spec.Communities, b)
		} else {
			c.lost(src, field+".attributes.communities.wellKnown", "%q has no name in Berth; write its numeric value under communities", v)
		}
	}
	for _, v := range large {
		if largeCommunity.MatchString(v) {
			spec.LargeCommunities = append(spec.LargeCommunities, v)
		} else {
			c.lost(src, field+".attributes.communities.large", "%q is not a large community", v)
		}
	}
}
