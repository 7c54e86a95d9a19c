package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
)

// TestSpeakerIPv6OnlyNode runs a speaker on a node whose Node object has
// only an IPv6 address, with BGP, layer 2 and forwarding on. Such a speaker
// used to wait forever for an IPv4 address to use as router ID, and none
// of the three started. Now its session to FRR comes up with a router ID
// hashed from the node's name, its IPv6 routes arrive, it answers NDP for a
// layer-2 address, and it programs the forwarding table.
func TestSpeakerIPv6OnlyNode(t *testing.T) {
	l := newL2Lab(t, 1)
	n := l.nodes[0]
	retryUpdate(t, "status of node "+n.name, func(ctx context.Context) error {
		node, err := l.e.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.host.IPv6.String()}}
		_, err = l.e.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	r1 := frr.Start(t, l.lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: n.host.IPv6, ASN: nodeASN}}})
	l.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"2001:db8:5100::/112"}})
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.bgpPeer("r1", r1.Host.IPv6, routerASN, nodeASN)
	l.advertise("main", v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"main"}}})
	n.speaker = startSpeaker(t, t, l.e, n, "--memberlist-port=7946", "--forwarding=true")
	l.e.namespace(t, "v6", nil)
	v6only := withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)
	l.e.service(t, "v6", "bgp", v6only, withAnnotation(v1alpha1.AnnotationPool, "main"))
	l.e.service(t, "v6", "l2", v6only, withAnnotation(v1alpha1.AnnotationPool, "l2"))
	bgpAddr := l.e.waitAllocated(t, "v6", "bgp", 1)[0]
	l2Addr := l.e.waitAllocated(t, "v6", "l2", 1)[0]

	waitSessions(t, r1, []netip.Addr{n.host.IPv6})
	d := waitNextHops(t, r1.Host, hostRoute(bgpAddr), []netip.Addr{n.host.IPv6}, settle)
	t.Logf("BGP: %s via %s in r1's kernel after %v", bgpAddr, n.host.IPv6, d)
	var nb map[string]struct {
		RemoteRouterID string `json:"remoteRouterId"`
	}
	if err := json.Unmarshal([]byte(r1.Vtysh(t, "show bgp neighbors "+n.host.IPv6.String()+" json")), &nb); err != nil {
		t.Fatal(err)
	}
	h := fnv.New32a()
	h.Write([]byte(n.name))
	v := h.Sum32()
	want := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	if got := nb[n.host.IPv6.String()].RemoteRouterID; got != want.String() {
		t.Errorf("router ID seen by r1: %q, want %s (hash of %q)", got, want, n.name)
	}

	mac := hostMAC(t, n.host)
	poll(t, settle, "NDP answer for "+l2Addr.String(), func() error {
		if got := l.ndpAnswers(l2Addr); len(got) != 1 || got[0] != mac {
			return fmt.Errorf("answers %v, want %s", got, mac)
		}
		return nil
	})
	poll(t, settle, "forwarding rules for both addresses", func() error {
		out, err := n.host.Exec(t.Context(), "nft", "list", "table", "inet", "berth")
		if err != nil {
			return err
		}
		for _, a := range []netip.Addr{bgpAddr, l2Addr} {
			if !strings.Contains(out, a.String()) {
				return fmt.Errorf("no rule for %s in:\n%s", a, out)
			}
		}
		return nil
	})
	n.speaker.waitReadyz(t)
}
