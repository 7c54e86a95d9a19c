package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// testClusterDualStack is scenario 7, on the dual-stack cluster (every node
// and pod has an IPv4 and an IPv6 address, kube-proxy serves both
// families): a RequireDualStack Service from a layer-2 pool with an IPv4
// and an IPv6 range gets one address of each family; exactly one node
// answers the client's ARP request for the IPv4 one and its NDP neighbour
// solicitation (ndisc6) for the IPv6 one, and the client's requests through
// both reach the echo pods on every node.
func testClusterDualStack(t *testing.T, c *cluster.Cluster, e *env, client *netlab.Host) {
	hostdeps.Require(t, "arping", "ndisc6")
	v4, v6 := c.Lab.Prefix4.Addr().As4(), c.Lab.Prefix6.Addr().As16()
	v4[3] = 232
	v6[14] = 0xfe
	clusterL2Pool(t, e, "dual",
		netip.PrefixFrom(netip.AddrFrom4(v4), 29),
		netip.PrefixFrom(netip.AddrFrom16(v6), 120))
	const ns = "dual"
	e.namespace(t, ns, nil)
	deployEcho(t, c, ns, "echo", int32(len(c.Nodes)))
	for _, p := range waitEchoReady(t, c, ns, "echo", len(c.Nodes)) {
		if len(p.Status.PodIPs) != 2 {
			t.Errorf("pod %s on %s has addresses %v, want one of each family", p.Name, p.Spec.NodeName, p.Status.PodIPs)
		}
	}
	e.service(t, ns, "echo", echoTarget, fromPool("dual"), withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	addrs := e.waitAllocated(t, ns, "echo", 2)
	if len(addrs) != 2 || addrs[0].Is4() == addrs[1].Is4() {
		t.Fatalf("dual-stack Service got %v, want an IPv4 and an IPv6 address", addrs)
	}
	macs := nodeMACs(t, c)
	for _, a := range addrs {
		url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(a, 80))
		took := firstAnswer(t, client, url, settle)
		got := askMany(t, client, url, 30)
		if nodes := got.nodes(); len(nodes) != len(c.Nodes) {
			t.Errorf("30 requests through %s answered by pods on %v, want every node", url, nodes)
		}
		var who []string
		poll(t, settle, "one node answers for "+a.String(), func() error {
			if who = l2Answers(client, a); len(who) != 1 || macs[who[0]] == nil {
				return fmt.Errorf("replies from %v, node MACs %v", who, macs)
			}
			return nil
		})
		how := "ARP"
		if a.Is6() {
			how = "NDP"
		}
		t.Logf("MEASURED: %s answered after %v by pods on %v; %s answered by %s only", url, took.Round(1e6), got.nodes(), how, macs[who[0]].Name)
	}
}
