package v1alpha1

import "testing"

func TestBGPPeerCarries(t *testing.T) {
	for _, tc := range []struct {
		spec     BerthBGPPeerSpec
		v4, v6   bool
		scenario string
	}{
		{BerthBGPPeerSpec{Address: "192.0.2.1"}, true, false, "an IPv4 peer, no families"},
		{BerthBGPPeerSpec{Address: "2001:db8::1"}, false, true, "an IPv6 peer, no families"},
		{BerthBGPPeerSpec{Address: "192.0.2.1", Families: []BGPFamily{BGPFamilyIPv4, BGPFamilyIPv6}}, true, true, "MP-BGP over IPv4"},
		{BerthBGPPeerSpec{Address: "2001:db8::1", Families: []BGPFamily{BGPFamilyIPv4}}, true, false, "IPv4 only over IPv6"},
		{BerthBGPPeerSpec{Address: "not an address"}, false, false, "unreadable address"},
		{BerthBGPPeerSpec{Interface: "eth1"}, false, true, "an interface peer, no families: IPv6 link-local"},
		{BerthBGPPeerSpec{Interface: "eth1", Families: []BGPFamily{BGPFamilyIPv4, BGPFamilyIPv6}}, true, true, "MP-BGP over an interface"},
		{BerthBGPPeerSpec{Interface: "eth1", Families: []BGPFamily{BGPFamilyIPv4}}, true, false, "IPv4 only over an interface"},
	} {
		if got := tc.spec.Carries(true); got != tc.v4 {
			t.Errorf("%s: Carries(IPv4) = %v", tc.scenario, got)
		}
		if got := tc.spec.Carries(false); got != tc.v6 {
			t.Errorf("%s: Carries(IPv6) = %v", tc.scenario, got)
		}
	}
}
