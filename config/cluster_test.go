package config_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func testCluster() config.Cluster {
	cidr := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"198.51.100.128/28", "2001:db8:ffff::/112"}}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"198.51.100.64/30"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "198.51.100.7"},
			{Type: corev1.NodeExternalIP, Address: "2001:db8::7"},
			{Type: corev1.NodeHostName, Address: "n1"},
		}}}
	return config.ClusterFrom([]*networkingv1.ServiceCIDR{cidr}, []*corev1.Node{node, node.DeepCopy()})
}

func TestClusterFrom(t *testing.T) {
	c := testCluster()
	want := config.Cluster{
		ServiceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/28"), netip.MustParsePrefix("2001:db8:ffff::/112")},
		PodRanges:     []netip.Prefix{netip.MustParsePrefix("198.51.100.64/30")},
		NodeAddresses: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")},
	}
	if diff := cmp.Diff(want, c, cmpAddr, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ClusterFrom (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ addr, why string }{
		{"198.51.100.129", "is inside the cluster's Service range 198.51.100.128/28"},
		{"2001:db8:ffff::1", "is inside the cluster's Service range 2001:db8:ffff::/112"},
		{"198.51.100.65", "is inside the cluster's pod range 198.51.100.64/30"},
		{"198.51.100.7", "is a node's address"},
		{"2001:db8::7", "is a node's address"},
		{"198.51.100.8", ""},
	} {
		why, used := c.Forbidden(netip.MustParseAddr(tc.addr))
		if why != tc.why || used != (tc.why != "") {
			t.Errorf("Forbidden(%s) = %q, %v; want %q", tc.addr, why, used, tc.why)
		}
	}
}

// TestForClusterReservesWhatTheClusterUses checks that no pool hands out
// the cluster's own addresses, that a Service asking for one is told why
// in words it may read, and that the pool names what overlaps.
func TestForClusterReservesWhatTheClusterUses(t *testing.T) {
	cfg := config.ForCluster([]*v1alpha1.BerthIPPool{ippool("lan", []string{"198.51.100.0/24", "2001:db8::/64"})}, testCluster())
	p, _ := cfg.Pool("lan")
	wantUse := []string{"the cluster's Service range 198.51.100.128/28", "the cluster's pod range 198.51.100.64/30", "node addresses 198.51.100.7, 2001:db8::7"}
	if diff := cmp.Diff(wantUse, p.ClusterUse); diff != "" {
		t.Errorf("ClusterUse (-want +got):\n%s", diff)
	}
	a := allocator.New()
	a.SetPools(cfg.AllocatorPools())
	for i := range 200 {
		got, err := a.Assign(allocator.Request{Service: "ns/s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Families: []allocator.Family{allocator.IPv4}, Pools: []string{"lan"}})
		if err != nil {
			break
		}
		if why, used := cfg.Cluster().Forbidden(got[0].Addr); used {
			t.Fatalf("handed out %s, which %s", got[0].Addr, why)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"198.51.100.130", "requested address 198.51.100.130 is inside the cluster's Service range 198.51.100.128/28, which Berth never hands out; ask for another address"},
		{"198.51.100.7", "requested address 198.51.100.7 is a node's address, which Berth never hands out"},
		{"198.51.100.66", "requested address 198.51.100.66 is inside the cluster's pod range 198.51.100.64/30"},
	} {
		_, err := cfg.Request(service(addresses(tc.addr)), nil)
		var re *config.RequestError
		if !errors.As(err, &re) || re.Reason != v1alpha1.ReasonRequestedAddressUnavailable || !strings.Contains(re.Msg, tc.want) {
			t.Errorf("Request for %s: %v, want RequestedAddressUnavailable containing %q", tc.addr, err, tc.want)
		}
	}
	// Without the cluster's ranges, the same address is fine.
	if _, err := config.For([]*v1alpha1.BerthIPPool{ippool("lan", []string{"198.51.100.0/24"})}).Request(service(addresses("198.51.100.7")), nil); err != nil {
		t.Errorf("without cluster ranges: %v", err)
	}
}
