package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/berthlb/berth/allocator"
)

// Cluster is what the cluster itself uses, read from its ServiceCIDR
// objects and Nodes. No pool hands out an address inside it: a Service
// given the API server's Service IP, a pod's address or a node's address
// would have Berth's forwarding capture traffic meant for them.
type Cluster struct {
	// ServiceRanges are the cluster's Service (ClusterIP) ranges.
	ServiceRanges []netip.Prefix
	// PodRanges are the Nodes' spec.podCIDRs.
	PodRanges []netip.Prefix
	// NodeAddresses are the Nodes' status addresses (InternalIP and
	// ExternalIP; hostnames are not addresses).
	NodeAddresses []netip.Addr
}

// ClusterFrom collects the ranges the cluster uses from its ServiceCIDRs
// and Nodes. Unparsable entries are skipped: the API server validates them.
func ClusterFrom(cidrs []*networkingv1.ServiceCIDR, nodes []*corev1.Node) Cluster {
	var c Cluster
	for _, sc := range cidrs {
		for _, s := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				c.ServiceRanges = append(c.ServiceRanges, p.Masked())
			}
		}
	}
	for _, n := range nodes {
		for _, s := range n.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				c.PodRanges = append(c.PodRanges, p.Masked())
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				c.NodeAddresses = append(c.NodeAddresses, ip.Unmap().WithZone(""))
			}
		}
	}
	sortPrefixes := func(ps []netip.Prefix) []netip.Prefix {
		slices.SortFunc(ps, func(a, b netip.Prefix) int {
			if x := a.Addr().Compare(b.Addr()); x != 0 {
				return x
			}
			return a.Bits() - b.Bits()
		})
		return slices.Compact(ps)
	}
	c.ServiceRanges, c.PodRanges = sortPrefixes(c.ServiceRanges), sortPrefixes(c.PodRanges)
	slices.SortFunc(c.NodeAddresses, netip.Addr.Compare)
	c.NodeAddresses = slices.Compact(c.NodeAddresses)
	return c
}

// Fingerprint identifies the ranges: equal ranges, equal fingerprints.
func (c Cluster) Fingerprint() string {
	var b strings.Builder
	for _, p := range slices.Concat(c.ServiceRanges, []netip.Prefix{{}}, c.PodRanges) {
		b.WriteString(p.String() + ",")
	}
	for _, a := range c.NodeAddresses {
		b.WriteString(a.String() + ",")
	}
	return b.String()
}

// Forbidden says why the cluster uses a, in words a tenant may read (it
// names ranges, never nodes), or false if it does not.
func (c Cluster) Forbidden(a netip.Addr) (string, bool) {
	for _, p := range c.ServiceRanges {
		if p.Contains(a) {
			return fmt.Sprintf("is inside the cluster's Service range %s", p), true
		}
	}
	for _, p := range c.PodRanges {
		if p.Contains(a) {
			return fmt.Sprintf("is inside the cluster's pod range %s", p), true
		}
	}
	if _, ok := slices.BinarySearchFunc(c.NodeAddresses, a, netip.Addr.Compare); ok {
		return "is a node's address", true
	}
	return "", false
}

// overlapping returns, as reserved ranges for the pool, what the cluster
// uses inside its ranges, and a description of each for the operator.
func (c Cluster) overlapping(p *Pool) (ranges []allocator.Range, what []string) {
	for _, set := range []struct {
		kind string
		ps   []netip.Prefix
	}{{"Service range", c.ServiceRanges}, {"pod range", c.PodRanges}} {
		for _, pr := range set.ps {
			r := allocator.Range{First: pr.Masked().Addr(), Last: lastAddr(pr)}
			if p.overlaps(r) {
				ranges = append(ranges, r)
				what = append(what, fmt.Sprintf("the cluster's %s %s", set.kind, pr))
			}
		}
	}
	var nodes []string
	for _, a := range c.NodeAddresses {
		if p.contains(a) {
			ranges = append(ranges, allocator.Range{First: a, Last: a})
			nodes = append(nodes, a.String())
		}
	}
	if len(nodes) > 0 {
		const most = 10
		list := strings.Join(nodes[:min(len(nodes), most)], ", ")
		if len(nodes) > most {
			list += fmt.Sprintf(" and %d more", len(nodes)-most)
		}
		what = append(what, "node addresses "+list)
	}
	return ranges, what
}

func (p *Pool) overlaps(r allocator.Range) bool {
	for _, x := range p.Alloc.Ranges {
		if x.First.BitLen() == r.First.BitLen() && x.First.Compare(r.Last) <= 0 && r.First.Compare(x.Last) <= 0 {
			return true
		}
	}
	return false
}
