package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/cluster"
)

// clusterFwdPools are the forwarding scenario's pools, one per ipMode,
// inside clusterBGPRoutes.
var clusterFwdPools = map[v1alpha1.IPMode]netip.Prefix{
	v1alpha1.IPModeVIP:   netip.MustParsePrefix("203.0.113.16/29"),
	v1alpha1.IPModeProxy: netip.MustParsePrefix("203.0.113.24/29"),
}

// testClusterForwarding is scenario 6: Berth's forwarding (the speaker's
// table inet berth, on by default in the chart) with the real kube-proxy
// in nftables mode and then in iptables mode, on the same nodes (each
// kube-proxy stopped, `kube-proxy --cleanup`, started in the other mode:
// cluster.SetKubeProxyMode). Two Services over BGP select the same echo
// pods, one from a pool with ipMode VIP and one with ipMode Proxy, each with
// loadBalancerSourceRanges naming the client alone: in both modes the
// client gets answers through both addresses and a second client (outside
// the ranges) gets none; kube-proxy programs the VIP address and not the
// Proxy one, which therefore reaches the pods through Berth's rewrite only.
// kube-proxy is back in nftables mode afterwards.
func testClusterForwarding(t *testing.T, c *cluster.Cluster, e *env, b *clusterBGPLab) {
	ctx := t.Context()
	refused := b.addClient(t, c, "refused")
	var pools []string
	for mode, pfx := range clusterFwdPools {
		name := "fwd-" + strings.ToLower(string(mode))
		e.pool(t, name, v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(pfx.String())}, IPMode: mode})
		pools = append(pools, name)
	}
	if _, err := e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(ctx, &v1alpha1.BerthBGPAdvertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "fwd"},
		Spec:       v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: pools}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const ns = "fwd"
	e.namespace(t, ns, nil)
	deployEcho(t, c, ns, "echo", int32(len(c.Nodes)))
	addr := map[v1alpha1.IPMode]netip.Addr{}
	for mode := range clusterFwdPools {
		name := strings.ToLower(string(mode))
		e.service(t, ns, name, echoTarget, fromPool("fwd-"+name), func(s *corev1.Service) {
			s.Spec.Selector = map[string]string{"app": "echo"}
			s.Spec.LoadBalancerSourceRanges = []string{netip.PrefixFrom(b.client.IPv4, 32).String()}
		})
		addr[mode] = e.waitAllocated(t, ns, name, 1)[0]
		s := e.waitService(t, ns, name, "ipMode "+string(mode), func(s *corev1.Service) bool {
			ing := s.Status.LoadBalancer.Ingress
			return len(ing) == 1 && ing[0].IPMode != nil && string(*ing[0].IPMode) == string(mode)
		})
		t.Logf("service %s/%s: %s, ipMode %s", ns, name, s.Status.LoadBalancer.Ingress[0].IP, *s.Status.LoadBalancer.Ingress[0].IPMode)
		waitNextHops(t, b.router.Host, hostRoute(addr[mode]), b.nodeIPs, settle)
	}

	current := "nftables"
	t.Cleanup(func() {
		if current != "nftables" {
			// t's context has ended by now.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.SetKubeProxyMode(ctx, "nftables"); err != nil {
				t.Errorf("back to nftables mode: %v", err)
			}
		}
	})
	for _, proxyMode := range []string{"nftables", "iptables"} {
		t.Run(proxyMode, func(t *testing.T) {
			if proxyMode != current {
				began := time.Now()
				current = proxyMode // even half done, the cleanup restores
				if err := c.SetKubeProxyMode(t.Context(), proxyMode); err != nil {
					t.Fatal(err)
				}
				t.Logf("MEASURED: every kube-proxy switched to %s mode (stop, --cleanup, start, healthy) in %v", proxyMode, time.Since(began).Round(time.Millisecond))
			}
			for mode, a := range addr {
				checkKubeProxyHolds(t, c, proxyMode, ns+"/"+strings.ToLower(string(mode)), a, mode == v1alpha1.IPModeVIP)
				url := fmt.Sprintf("http://%s/", a)
				took := firstAnswer(t, b.client, url, settle)
				got := askMany(t, b.client, url, 10)
				hc := httpFrom(refused)
				hc.Timeout = time.Second
				for i := range 3 {
					if a, err := ask(t.Context(), hc, url); err == nil {
						t.Errorf("ipMode %s: the client outside loadBalancerSourceRanges got an answer through %s (try %d): %+v", mode, url, i+1, a)
					}
				}
				t.Logf("kube-proxy %s, ipMode %s: the allowed client answered after %v by nodes %v; the refused one got no answer 3 times",
					proxyMode, mode, took.Round(time.Millisecond), got.nodes())
			}
		})
	}
}

// checkKubeProxyHolds fails t unless every node's kube-proxy in proxyMode
// has rules for the Service (namespace/name) and has (want) or has not
// (!want) a rule for the address.
func checkKubeProxyHolds(t *testing.T, c *cluster.Cluster, proxyMode, svc string, a netip.Addr, want bool) {
	t.Helper()
	for _, n := range c.Nodes {
		poll(t, 5*time.Second, fmt.Sprintf("%s's kube-proxy holds %s: %v", n.Name, a, want), func() error {
			out, err := n.KubeProxyRules(t.Context(), proxyMode)
			if err != nil {
				return err
			}
			if !strings.Contains(out, svc) {
				return fmt.Errorf("kube-proxy's %s rules name no %s", proxyMode, svc)
			}
			if has := strings.Contains(out, a.String()); has != want {
				return fmt.Errorf("kube-proxy's %s rules show %s: %v", proxyMode, a, has)
			}
			return nil
		})
	}
}
