package migrate

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/berthlb/berth/api/v1alpha1"
)

// Level says how much of a source field reached the output.
type Level string

const (
	// Lost means the field, or the whole object, is not in the output.
	Lost Level = "not converted"
	// Changed means it was carried over, but Berth's meaning differs; review it.
	Changed Level = "review"
)

// Note is one entry of the report.
type Note struct {
	Level  Level
	Source string // the source object, "IPAddressPool metallb-system/public"
	Field  string // the source field, "spec.bfdProfile"; "" for the whole object
	Msg    string // why, and what to do
}

// Result is what a conversion produced.
type Result struct {
	Pools   []*v1alpha1.BerthIPPool
	Peers   []*v1alpha1.BerthBGPPeer
	BGPAdvs []*v1alpha1.BerthBGPAdvertisement
	L2Advs  []*v1alpha1.BerthL2Advertisement
	Notes   []Note
}

// converter holds the state of one Convert call.
type converter struct {
	res         Result
	communities map[string]string // MetalLB Community aliases, name to value
	names       map[string]string // "Kind/name" of an output object to its source
	cilium      ciliumBGP
}

// Convert turns the source objects into Berth's. Objects it does not know
// are reported and skipped. The output is in a stable order: the order of
// the input within each kind.
func Convert(objs []*unstructured.Unstructured) *Result {
	c := &converter{communities: map[string]string{}, names: map[string]string{}}
	// Communities first: advertisements refer to them by name.
	for _, o := range objs {
		if group(o) == "metallb.io" && o.GetKind() == "Community" {
			c.community(o)
		}
	}
	for _, o := range objs {
		c.convert(o)
	}
	c.ciliumBGP()
	c.checkFamilies()
	c.checkServices(objs)
	return &c.res
}

func (c *converter) convert(o *unstructured.Unstructured) {
	src := source(o)
	switch group(o) + "/" + o.GetKind() {
	case "metallb.io/Community":
		// Read above.
	case "metallb.io/IPAddressPool":
		c.metallbPool(o, src)
	case "metallb.io/BGPPeer":
		c.metallbPeer(o, src)
	case "metallb.io/BGPAdvertisement":
		c.metallbBGPAdv(o, src)
	case "metallb.io/L2Advertisement":
		c.metallbL2Adv(o, src)
	case "cilium.io/CiliumLoadBalancerIPPool":
		c.ciliumPool(o, src)
	case "cilium.io/CiliumBGPClusterConfig", "cilium.io/CiliumBGPPeerConfig", "cilium.io/CiliumBGPAdvertisement":
		c.collectCiliumBGP(o, src)
	case "/Service":
		// Checked once the pools are converted (checkServices).
	case "metallb.io/AddressPool":
		c.lost(src, "", "the AddressPool kind was removed in MetalLB 0.14; convert it to an IPAddressPool with MetalLB's own tools first")
	case "metallb.io/BFDProfile":
		c.lost(src, "", "Berth has no BFD yet; peers that name this profile are converted without it")
	case "cilium.io/CiliumBGPPeeringPolicy":
		c.lost(src, "", "the v1 BGP control plane resource is not converted; move to CiliumBGPClusterConfig (BGP control plane v2) or write the BerthBGPPeers by hand")
	default:
		c.lost(src, "", "not a kind the converter knows; nothing was converted from it")
	}
}

// group is o's API group, "" for the core group.
func group(o *unstructured.Unstructured) string {
	g, _, ok := strings.Cut(o.GetAPIVersion(), "/")
	if !ok {
		return ""
	}
	return g
}

func source(o *unstructured.Unstructured) string {
	name := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s %s", o.GetAPIVersion(), o.GetKind(), name)
}

func (c *converter) lost(src, field, format string, args ...any) {
	c.note(Note{Level: Lost, Source: src, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *converter) changed(src, field, format string, args ...any) {
	c.note(Note{Level: Changed, Source: src, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// note records n once: a CiliumBGPPeerConfig shared by several peers is
// read once per peer.
func (c *converter) note(n Note) {
	if !slices.Contains(c.res.Notes, n) {
		c.res.Notes = append(c.res.Notes, n)
	}
}

// claim reserves an output name for src, or reports that another source
// already converts to it. Berth's resources are cluster-scoped; the
// sources may be namespaced.
func (c *converter) claim(kind, name, src string) bool {
	k := kind + "/" + name
	if prev, taken := c.names[k]; taken {
		c.lost(src, "metadata.name", "%s %q is already converted from %s; rename one of them and convert again", kind, name, prev)
		return false
	}
	c.names[k] = src
	return true
}

// decodeSpec decodes o's spec into into and reports every spec field the
// converter does not know, so that nothing is dropped silently.
func (c *converter) decodeSpec(o *unstructured.Unstructured, src string, into any) bool {
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	raw, err := json.Marshal(spec)
	if err == nil {
		err = json.Unmarshal(raw, into)
	}
	if err != nil {
		c.lost(src, "spec", "cannot be read: %v", err)
		return false
	}
	known := jsonFields(reflect.TypeOf(into).Elem())
	var unknown []string
	for k := range spec {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		c.lost(src, "spec."+k, "a field the converter does not know; it was not carried over")
	}
	return true
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

func objectMeta(o *unstructured.Unstructured) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.GetName(), Labels: o.GetLabels()}
}

// oneSelector returns the first of a list of selectors that MetalLB ORs,
// reporting that the others are lost; Berth takes one selector.
func (c *converter) oneSelector(src, field string, sels []metav1.LabelSelector) *metav1.LabelSelector {
	if len(sels) == 0 {
		return nil
	}
	if len(sels) > 1 {
		c.lost(src, field, "%d selectors (any may match); Berth takes one, so only the first was carried over: objects matched only by the others are no longer selected", len(sels))
	}
	return &sels[0]
}

// selectorCombos expands lists of alternative selectors into the
// AdvertisementSelectors that together select the same: MetalLB ORs
// ipAddressPools with each of ipAddressPoolSelectors and ORs its
// nodeSelectors, while Berth ANDs the fields of one advertisement but
// announces an address if any advertisement matches it.
func selectorCombos(pools []string, poolSels, nodeSels []metav1.LabelSelector) []v1alpha1.AdvertisementSelector {
	var poolAlts []v1alpha1.AdvertisementSelector
	if len(pools) > 0 {
		poolAlts = append(poolAlts, v1alpha1.AdvertisementSelector{IPPools: pools})
	}
	for i := range poolSels {
		poolAlts = append(poolAlts, v1alpha1.AdvertisementSelector{IPPoolSelector: &poolSels[i]})
	}
	if len(poolAlts) == 0 {
		poolAlts = []v1alpha1.AdvertisementSelector{{}}
	}
	var out []v1alpha1.AdvertisementSelector
	for _, p := range poolAlts {
		if len(nodeSels) == 0 {
			out = append(out, p)
			continue
		}
		for i := range nodeSels {
			s := p
			s.NodeSelector = &nodeSels[i]
			out = append(out, s)
		}
	}
	return out
}

// splitNames names the advertisements one source becomes: its own name if
// one, name-1, name-2... if several.
func splitNames(name string, n int) []string {
	if n == 1 {
		return []string{name}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", name, i+1)
	}
	return out
}

// checkFamilies makes the peers of one family carry the other as well
// (MP-BGP, as MetalLB's FRR mode and Cilium do) when pools of that other
// family are advertised over BGP and no peer of that family exists: one
// dual-stack session per router, announcing each node's own address of the
// route's family as next hop. With peers of both families each keeps its
// own, as MetalLB's native mode needs.
func (c *converter) checkFamilies() {
	if len(c.res.BGPAdvs) == 0 {
		return
	}
	for _, v6 := range []bool{true, false} {
		isFam := func(a string) bool { return strings.Contains(a, ":") == v6 }
		hasPool := slices.ContainsFunc(c.res.Pools, func(p *v1alpha1.BerthIPPool) bool {
			return slices.ContainsFunc(p.Spec.Addresses, func(a v1alpha1.AddressRange) bool { return isFam(string(a)) })
		})
		hasPeer := slices.ContainsFunc(c.res.Peers, func(p *v1alpha1.BerthBGPPeer) bool { return isFam(p.Spec.Address) })
		if !hasPool || hasPeer {
			continue
		}
		fam, other := "IPv6", "IPv4"
		if !v6 {
			fam, other = other, fam
		}
		for _, p := range c.res.Peers {
			if len(p.Spec.Families) == 0 {
				p.Spec.Families = []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
			}
		}
		c.changed("(all)", "", "%s pools are advertised over BGP and every peer is %s: the peers carry both families over their one session (spec.families), with each node's %s InternalIP as the next hop of %s routes; check that the routers activate %s unicast on these sessions",
			fam, other, fam, fam, strings.ToLower(fam))
	}
}
