package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func checkPools(s *Snapshot) []Finding {
	const check = "pools"
	if !s.hasCRDs() {
		return nil
	}
	if len(s.Pools) == 0 {
		return []Finding{{Check: check, Severity: Fail, Summary: "no BerthIPPool: no Service can get an address",
			Fix: "create one (docs/pools.md; manifests/examples)"}}
	}
	var out []Finding
	type span struct {
		pool, text string
		r          allocator.Range
	}
	var spans []span
	for _, p := range s.Pools {
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady); c != nil && c.Status == metav1.ConditionFalse {
			out = append(out, Finding{Check: check, Severity: Fail,
				Summary: fmt.Sprintf("BerthIPPool %s is not Ready (%s): %s", p.Name, c.Reason, c.Message),
				Fix:     "fix its spec: kubectl get berthippool " + p.Name + " -o yaml"})
		}
		for _, a := range p.Spec.Addresses {
			if r, err := allocator.ParseRange(string(a)); err == nil {
				spans = append(spans, span{p.Name, string(a), r})
			}
		}
		if !announced(s, &p) {
			out = append(out, Finding{Check: check, Severity: Warn,
				Summary: fmt.Sprintf("BerthIPPool %s is selected by no BerthBGPAdvertisement and no BerthL2Advertisement: its addresses are handed out but no node announces them", p.Name),
				Fix:     "create an advertisement whose ipPools or ipPoolSelector selects it (docs/bgp.md, docs/layer2.md)"})
		}
	}
	seen := map[[2]string]bool{}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.pool == b.pool || seen[[2]string{a.pool, b.pool}] || !overlap(a.r, b.r) {
				continue
			}
			seen[[2]string{a.pool, b.pool}] = true
			out = append(out, Finding{Check: check, Severity: Warn,
				Summary: fmt.Sprintf("BerthIPPools %s and %s overlap (%s and %s): each address is still handed out once, but which pool a Service's address counts against is arbitrary", a.pool, b.pool, a.text, b.text),
				Fix:     "make their addresses disjoint, or move the shared range to a reserved list in one of them"})
		}
	}
	if len(out) == 0 {
		out = append(out, Finding{Check: check, Severity: OK, Summary: plural(len(s.Pools), "BerthIPPool") + ": all Ready and announced, none overlapping"})
	}
	return out
}

func overlap(a, b allocator.Range) bool {
	return a.First.BitLen() == b.First.BitLen() && a.First.Compare(b.Last) <= 0 && b.First.Compare(a.Last) <= 0
}

// announced reports whether some advertisement selects pool p.
func announced(s *Snapshot, p *v1alpha1.BerthIPPool) bool {
	var sels []v1alpha1.AdvertisementSelector
	for _, a := range s.BerthBGPAdvertisements {
		sels = append(sels, a.Spec.AdvertisementSelector)
	}
	for _, a := range s.BerthL2Advertisements {
		sels = append(sels, a.Spec.AdvertisementSelector)
	}
	for _, sel := range sels {
		if len(sel.IPPools) > 0 && !contains(sel.IPPools, p.Name) {
			continue
		}
		if sel.IPPoolSelector != nil {
			ls, err := metav1.LabelSelectorAsSelector(sel.IPPoolSelector)
			if err != nil || !ls.Matches(labels.Set(p.Labels)) {
				continue
			}
		}
		return true
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func allocatedCondition(svc *corev1.Service) *metav1.Condition {
	return meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionAddressAllocated)
}

// reasonFixes says what to do for each reason a Service is pending.
var reasonFixes = map[string]string{
	v1alpha1.ReasonPoolExhausted:               "add a range to the pool, or free addresses (kubectl berth pools shows usage)",
	v1alpha1.ReasonNoMatchingPool:              "create a pool whose serviceAllocation selects the Service (namespace, labels) or fix its berth.dev/pool annotation",
	v1alpha1.ReasonRequestedAddressUnavailable: "ask for an address that is free and in a pool the Service may use, or drop berth.dev/addresses",
	v1alpha1.ReasonSharingConflict:             "use another berth.dev/sharing-key, or ports that do not collide with the other Services sharing the address",
	v1alpha1.ReasonInvalidRequest:              "fix the Service's annotations as the message says",
	v1alpha1.ReasonPartiallyAllocated:          "the message names the missing family and why; see the fix for that reason in docs/pools.md",
}

func checkServices(s *Snapshot) []Finding {
	const check = "services"
	var out []Finding
	handled, pending := 0, 0
	svcs := append([]corev1.Service(nil), s.Services...)
	sort.Slice(svcs, func(i, j int) bool {
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	for _, svc := range svcs {
		name := svc.Namespace + "/" + svc.Name
		if svc.Spec.LoadBalancerClass == nil && allocatedCondition(&svc) == nil && len(svc.Status.LoadBalancer.Ingress) == 0 {
			out = append(out, Finding{Check: check, Severity: Warn,
				Summary: fmt.Sprintf("%s is pending and has no loadBalancerClass: Berth's controller handles it only with --handle-unclassed (berth-ccm handles such Services)", name),
				Fix:     "set spec.loadBalancerClass: " + s.Names.LoadBalancerClass + " (on a new Service: the field is immutable), or run the controller with --handle-unclassed"})
			continue
		}
		if !s.handled(&svc) {
			continue
		}
		handled++
		c := allocatedCondition(&svc)
		switch {
		case c == nil && len(svc.Status.LoadBalancer.Ingress) == 0:
			pending++
			out = append(out, Finding{Check: check, Severity: Fail,
				Summary: fmt.Sprintf("%s is pending and carries no %s condition: the controller has not looked at it", name, v1alpha1.ServiceConditionAddressAllocated),
				Fix:     "see the controller check above; kubectl -n " + s.Names.Namespace + " logs deploy/" + s.Names.Controller})
		case c != nil && c.Status == metav1.ConditionFalse:
			pending++
			sev := Fail
			if len(svc.Status.LoadBalancer.Ingress) > 0 {
				sev = Warn
			}
			out = append(out, Finding{Check: check, Severity: sev,
				Summary: fmt.Sprintf("%s is pending (%s): %s", name, c.Reason, c.Message),
				Fix:     orDefault(reasonFixes[c.Reason], "kubectl -n "+svc.Namespace+" describe service "+svc.Name)})
		}
	}
	if pending == 0 {
		return append(out, Finding{Check: check, Severity: OK, Summary: fmt.Sprintf("every LoadBalancer Service of class %s has its addresses (%d)", s.Names.LoadBalancerClass, handled)})
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// kubeProxyConfig is the part of kube-proxy's configuration the checks
// read.
type kubeProxyConfig struct {
	Mode string `json:"mode"`
	IPVS struct {
		StrictARP bool `json:"strictARP"`
	} `json:"ipvs"`
}

func checkKubeProxy(s *Snapshot) []Finding {
	const check = "kube-proxy"
	cm := s.KubeProxyConfigMap
	if cm == nil {
		return []Finding{{Check: check, Severity: Info,
			Summary: "no ConfigMap kube-system/kube-proxy (not a kubeadm cluster, or another proxy): its mode was not checked",
			Fix:     "with kube-proxy in IPVS mode and layer 2, set ipvs.strictARP: true; Berth's forwarding is tested with iptables and nftables modes (docs/forwarding.md)"}}
	}
	var cfg kubeProxyConfig
	if err := yaml.Unmarshal([]byte(cm.Data["config.conf"]), &cfg); err != nil {
		return []Finding{{Check: check, Severity: Warn, Summary: "cannot read config.conf of ConfigMap kube-system/kube-proxy: " + err.Error()}}
	}
	mode := orDefault(cfg.Mode, "iptables")
	switch {
	case mode == "ipvs" && !cfg.IPVS.StrictARP && len(s.BerthL2Advertisements) > 0:
		return []Finding{{Check: check, Severity: Fail,
			Summary: "IPVS mode without ipvs.strictARP: every node binds the load-balancer addresses to kube-ipvs0 and answers ARP for them, so layer-2 ownership does not hold",
			Fix:     "set ipvs.strictARP: true in ConfigMap kube-system/kube-proxy and restart kube-proxy"}}
	case mode == "ipvs":
		return []Finding{{Check: check, Severity: Warn,
			Summary: "IPVS mode: Berth's forwarding is tested with kube-proxy's iptables and nftables modes only",
			Fix:     "prefer mode nftables or iptables (docs/forwarding.md, Limits)"}}
	}
	return []Finding{{Check: check, Severity: OK, Summary: "mode " + mode}}
}

// checkSourceRanges reports the Services whose loadBalancerSourceRanges
// refuse more than their owner probably meant: ranges that do not parse
// (every client refused) and addresses with no range of their family.
func checkSourceRanges(s *Snapshot) []Finding {
	const check = "source ranges"
	var out []Finding
	restrictedN := 0
	for _, svc := range s.Services {
		if !s.handled(&svc) {
			continue
		}
		restricted, ranges, err := config.SourceRanges(&svc)
		if !restricted {
			continue
		}
		restrictedN++
		name := svc.Namespace + "/" + svc.Name
		if err != nil {
			out = append(out, Finding{Check: check, Severity: Fail,
				Summary: fmt.Sprintf("%s: %v: Berth refuses every client (it fails closed)", name, err),
				Fix:     "write every entry as a CIDR (192.0.2.0/24, 2001:db8::/32)"})
			continue
		}
		var missing []string
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				continue
			}
			if !hasFamily(ranges, a.Is4()) {
				missing = append(missing, a.String())
			}
		}
		if len(missing) > 0 {
			out = append(out, Finding{Check: check, Severity: Warn,
				Summary: fmt.Sprintf("%s: no source range of the family of %s, so every client of that address is refused", name, strings.Join(missing, ", ")),
				Fix:     "add a range of that family, or drop the family from spec.ipFamilies"})
		}
	}
	if len(out) == 0 && restrictedN > 0 {
		out = append(out, Finding{Check: check, Severity: OK, Summary: plural(restrictedN, "restricted Service") + ", every address with ranges of its family"})
	}
	return out
}

func hasFamily(ranges []netip.Prefix, v4 bool) bool {
	for _, r := range ranges {
		if r.Addr().Is4() == v4 {
			return true
		}
	}
	return false
}
