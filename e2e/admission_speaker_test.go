package e2e

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestSpeakerCRDAdmission checks the schema and CEL rules of BerthBGPPeer,
// BerthBGPAdvertisement and BerthL2Advertisement in the real API server.
func TestSpeakerCRDAdmission(t *testing.T) {
	e := newEnv(t)
	i32 := func(v int32) *int32 { return &v }
	peer := func(mut func(*v1alpha1.BerthBGPPeerSpec)) v1alpha1.BerthBGPPeerSpec {
		s := v1alpha1.BerthBGPPeerSpec{Address: "198.18.0.1", ASN: 64512, LocalASN: 64513}
		if mut != nil {
			mut(&s)
		}
		return s
	}
	peers := []struct {
		name    string
		spec    v1alpha1.BerthBGPPeerSpec
		wantErr string
	}{
		{"minimal", peer(nil), ""},
		{"v6 with source", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.SourceAddress = "2001:db8::1", "2001:db8::2" }), ""},
		{"4-byte ASN", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.ASN = 4200000000 }), ""},
		{"bad address", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address = "198.18.0.300" }), `"198.18.0.300" is not an IP address`},
		{"ASN 0", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.ASN = 0 }), "spec.asn"},
		{"ASN too large", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.LocalASN = 4294967296 }), "spec.localASN"},
		{"hold time 2", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.HoldTimeSeconds = i32(2) }), "holdTimeSeconds must be at least 3"},
		// RFC 4271's "no keepalives": GoBGP cannot run it, so it is refused
		// rather than silently replaced by the default of 90s.
		{"hold time 0", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.HoldTimeSeconds = i32(0) }), "holdTimeSeconds must be at least 3"},
		{"hold time 3", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.HoldTimeSeconds, s.KeepaliveTimeSeconds = i32(3), i32(1) }), ""},
		{"both families with next hops", peer(func(s *v1alpha1.BerthBGPPeerSpec) {
			s.Families = []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
			s.NextHopIPv4, s.NextHopIPv6 = "198.18.0.9", "2001:db8::9"
		}), ""},
		{"unknown family", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Families = []v1alpha1.BGPFamily{"L2VPN"} }), "spec.families"},
		{"family twice", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Families = []v1alpha1.BGPFamily{"IPv6", "IPv6"} }), "spec.families"},
		{"IPv6 next hop for IPv4", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.NextHopIPv4 = "2001:db8::9" }), "nextHopIPv4 must be an IPv4 address"},
		{"IPv4 next hop for IPv6", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.NextHopIPv6 = "198.18.0.9" }), "nextHopIPv6 must be an IPv6 address"},
		{"keepalive not below hold", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.HoldTimeSeconds, s.KeepaliveTimeSeconds = i32(9), i32(9) }), "keepaliveTimeSeconds must be less than holdTimeSeconds"},
		{"multihop with GTSM", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.EBGPMultiHop, s.TTLSecurity = i32(2), true }), "exclude each other"},
		{"source of other family", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.SourceAddress = "2001:db8::2" }), "same IP family"},
		{"port out of range", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Port = 70000 }), "spec.port"},
		{"prefix limit", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.MaxReceivedPrefixes = i32(500) }), ""},
		{"prefix limit 0", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.MaxReceivedPrefixes = i32(0) }), "spec.maxReceivedPrefixes"},
		{"prefix limit too large", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.MaxReceivedPrefixes = i32(1000001) }), "spec.maxReceivedPrefixes"},
		{"bfd defaults", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.BFD = &v1alpha1.BFDProfile{} }), ""},
		{"bfd 300ms x 3 multihop", peer(func(s *v1alpha1.BerthBGPPeerSpec) {
			s.BFD = &v1alpha1.BFDProfile{MinTxMillis: i32(300), MinRxMillis: i32(300), Multiplier: i32(3), Multihop: true}
		}), ""},
		{"bfd interval too short", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.BFD = &v1alpha1.BFDProfile{MinTxMillis: i32(5)} }), "spec.bfd.minTxMillis"},
		{"bfd interval too long", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.BFD = &v1alpha1.BFDProfile{MinRxMillis: i32(60001)} }), "spec.bfd.minRxMillis"},
		{"bfd multiplier 0", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.BFD = &v1alpha1.BFDProfile{Multiplier: i32(0)} }), "spec.bfd.multiplier"},
		{"bfd multihop with GTSM", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.TTLSecurity, s.BFD = true, &v1alpha1.BFDProfile{Multihop: true} }), "bfd.multihop and ttlSecurity exclude each other"},
		{"interface peer", peer(func(s *v1alpha1.BerthBGPPeerSpec) {
			s.Address, s.Interface, s.Families = "", "eth1", []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
		}), ""},
		{"interface peer with single-hop bfd", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.Interface, s.BFD = "", "eth1", &v1alpha1.BFDProfile{} }), ""},
		{"address and interface", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Interface = "eth1" }), "exactly one of address and interface must be set"},
		{"neither address nor interface", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address = "" }), "exactly one of address and interface must be set"},
		{"interface name too long", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.Interface = "", "a-very-long-name0" }), "spec.interface"},
		{"interface name with slash", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.Interface = "", "eth1/0" }), "spec.interface"},
		{"interface name dot", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.Interface = "", "." }), "interface must be a network interface name"},
		{"interface with source", peer(func(s *v1alpha1.BerthBGPPeerSpec) {
			s.Address, s.Interface, s.SourceAddress = "", "eth1", "2001:db8::2"
		}), "interface and sourceAddress exclude each other"},
		{"interface with multihop", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.Address, s.Interface, s.EBGPMultiHop = "", "eth1", i32(2) }), "interface and ebgpMultiHop exclude each other"},
		{"interface with bfd multihop", peer(func(s *v1alpha1.BerthBGPPeerSpec) {
			s.Address, s.Interface, s.BFD = "", "eth1", &v1alpha1.BFDProfile{Multihop: true}
		}), "interface and bfd.multihop exclude each other"},
		// Passes admission; the speaker rejects it (TestSpeakerBGPDegradesPerPart).
		{"multihop on iBGP", peer(func(s *v1alpha1.BerthBGPPeerSpec) { s.ASN, s.EBGPMultiHop = 64513, i32(2) }), ""},
	}
	for i, tc := range peers {
		t.Run("BerthBGPPeer/"+tc.name, func(t *testing.T) {
			_, err := e.berth.BerthV1alpha1().BerthBGPPeers().Create(t.Context(), &v1alpha1.BerthBGPPeer{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("peer-%d", i)}, Spec: tc.spec,
			}, metav1.CreateOptions{})
			checkAdmission(t, err, tc.wantErr)
		})
	}

	adv := func(mut func(*v1alpha1.BerthBGPAdvertisementSpec)) v1alpha1.BerthBGPAdvertisementSpec {
		var s v1alpha1.BerthBGPAdvertisementSpec
		mut(&s)
		return s
	}
	advs := []struct {
		name    string
		spec    v1alpha1.BerthBGPAdvertisementSpec
		wantErr string
	}{
		{"communities", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) {
			s.Communities = []string{"65000:100", "no-export", "65535:65535"}
			s.LargeCommunities = []string{"4200000000:1:2"}
		}), ""},
		{"community part too large", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.Communities = []string{"65536:1"} }), "at most 65535"},
		{"community garbage", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.Communities = []string{"no-exports"} }), "spec.communities"},
		{"large community garbage", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.LargeCommunities = []string{"1:2"} }), "spec.largeCommunities"},
		{"aggregation too long", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.AggregationLength = i32(33) }), "spec.aggregationLength"},
		{"selectors", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) {
			s.IPPools = []string{"a"}
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1"}}
			s.AggregationLengthV6 = i32(64)
		}), ""},
		{"namespaces", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.Namespaces = []string{"public", "team-a"} }), ""},
		{"bad namespace", adv(func(s *v1alpha1.BerthBGPAdvertisementSpec) { s.Namespaces = []string{"Not_A_Namespace"} }), "spec.namespaces"},
	}
	for i, tc := range advs {
		t.Run("BerthBGPAdvertisement/"+tc.name, func(t *testing.T) {
			_, err := e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(t.Context(), &v1alpha1.BerthBGPAdvertisement{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("adv-%d", i)}, Spec: tc.spec,
			}, metav1.CreateOptions{})
			checkAdmission(t, err, tc.wantErr)
		})
	}

	l2 := []struct {
		name    string
		ifaces  []string
		wantErr string
	}{
		{"names and patterns", []string{"eth0", "bond*", "enp[0-9]s0"}, ""},
		{"bad interface", []string{"eth 0"}, "spec.interfaces"},
	}
	for i, tc := range l2 {
		t.Run("BerthL2Advertisement/"+tc.name, func(t *testing.T) {
			_, err := e.berth.BerthV1alpha1().BerthL2Advertisements().Create(t.Context(), &v1alpha1.BerthL2Advertisement{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("l2-%d", i)},
				Spec:       v1alpha1.BerthL2AdvertisementSpec{Interfaces: tc.ifaces},
			}, metav1.CreateOptions{})
			checkAdmission(t, err, tc.wantErr)
		})
	}
}

func checkAdmission(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("rejected a valid object: %v", err)
	case wantErr != "" && err == nil:
		t.Errorf("accepted an invalid object, want rejection containing %q", wantErr)
	case wantErr != "" && !apierrors.IsInvalid(err):
		t.Errorf("rejected with %v, want an Invalid error containing %q", err, wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("rejection %q does not contain %q", err.Error(), wantErr)
	}
}
