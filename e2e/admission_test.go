package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestIPPoolAdmission checks the CRD's schema and CEL rules in the real API
// server: every bad entry is rejected with a message naming it, and every
// good one is accepted.
func TestIPPoolAdmission(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		spec    v1alpha1.BerthIPPoolSpec
		wantErr string // substring of the rejection; "" means accepted
	}{
		{"v4 cidr", spec("198.51.100.0/24"), ""},
		{"v6 cidr", spec("2001:db8::/64"), ""},
		{"mixed families in one pool", spec("198.51.100.0/24", "2001:db8::/64"), ""},
		{"single addresses", spec("198.51.100.7", "2001:db8::7"), ""},
		{"v4 range", spec("198.51.100.10-198.51.100.20"), ""},
		{"v4 range with spaces", spec("198.51.100.10 - 198.51.100.20"), ""},
		{"v4 range of one", spec("198.51.100.10-198.51.100.10"), ""},
		{"v6 range", spec("2001:db8::10-2001:db8::1:0"), ""},
		{"v6 range across groups", spec("2001:db8::ffff-2001:db8::1:0"), ""},
		{"whole v6 space", spec("::/0"), `spans special-purpose blocks`},
		{"whole v6 space allowed", catchAll(spec("::/0")), ""},
		{"whole v4 space", spec("0.0.0.0/0"), `as 0.0.0.0/0 and ::/0 do`},
		{"whole v4 space allowed", catchAll(spec("0.0.0.0/0", "::/0")), ""},
		{"half v4 space spans loopback", spec("0.0.0.0/1"), `spans special-purpose blocks`},
		{"v6 global unicast spans nothing", spec("2000::/3"), ""},
		{"range ending in loopback", spec("126.255.255.250-127.0.0.5"), `spans special-purpose blocks`},
		{"v4 loopback", spec("127.0.0.1"), `"127.0.0.1" lies inside a special-purpose block`},
		{"v4 loopback even with allowCatchAll", catchAll(spec("127.0.0.0/8")), `"127.0.0.0/8" lies inside`},
		{"v6 loopback", spec("::1"), `"::1" lies inside`},
		{"metadata service", spec("198.51.100.0/24", "169.254.169.254"), `"169.254.169.254" lies inside`},
		{"link-local v4 range", spec("169.254.1.1-169.254.1.9"), `"169.254.1.1-169.254.1.9" lies inside`},
		{"link-local v6", spec("fe80::/64"), `"fe80::/64" lies inside`},
		{"multicast v4", spec("239.1.1.0/24"), `"239.1.1.0/24" lies inside`},
		{"multicast v6", spec("ff02::1"), `"ff02::1" lies inside`},
		{"unspecified v4", spec("0.0.0.0"), `"0.0.0.0" lies inside`},
		{"unspecified v6", spec("::"), `"::" lies inside`},
		{"broadcast", spec("255.255.255.255"), `"255.255.255.255" lies inside`},
		{"two bad entries named", spec("127.0.0.1", "198.51.100.0/24", "fe80::1"), `spec.addresses[2]: Invalid value: "fe80::1": "fe80::1" lies inside`},
		{"reserved may name special addresses", v1alpha1.BerthIPPoolSpec{AllowCatchAll: true, Addresses: []v1alpha1.AddressRange{"0.0.0.0/0"}, Reserved: []v1alpha1.AddressRange{"127.0.0.0/8"}}, ""},
		{"garbage", spec("not-an-ip"), `"not-an-ip" is not an IP address`},
		{"octet out of range", spec("198.51.100.300/24"), `"198.51.100.300/24" is not an IP address`},
		{"prefix too long", spec("198.51.100.0/33"), `"198.51.100.0/33" is not an IP address`},
		{"host bits", spec("198.51.100.1/24"), `"198.51.100.1/24" has host bits set`},
		{"v6 host bits", spec("2001:db8::1/64"), `"2001:db8::1/64" has host bits set`},
		{"reversed v4", spec("198.51.100.20-198.51.100.10"), `range "198.51.100.20-198.51.100.10" is reversed`},
		{"reversed v4 by one", spec("198.51.100.11-198.51.100.10"), `is reversed`},
		{"reversed v6", spec("2001:db8::1:0-2001:db8::ffff"), `range "2001:db8::1:0-2001:db8::ffff" is reversed`},
		{"reversed v6 low bit", spec("2001:db8::3-2001:db8::2"), `is reversed`},
		{"mixed range", spec("198.51.100.1-2001:db8::1"), `range "198.51.100.1-2001:db8::1" mixes IPv4 and IPv6`},
		{"two dashes", spec("198.51.100.1-198.51.100.2-198.51.100.3"), `is not an IP address`},
		{"zone", spec("fe80::1%eth0"), `is not an IP address`},
		{"bad reserved", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}, Reserved: []v1alpha1.AddressRange{"198.51.100.9-198.51.100.1"}}, `is reversed`},
		{"no addresses", v1alpha1.BerthIPPoolSpec{}, `spec.addresses`},
		{"bad ipMode", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}, IPMode: "Tunnel"}, `Unsupported value: "Tunnel"`},
		{"bad namespace", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.0/24"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"Not_A_Namespace"}},
		}, `spec.serviceAllocation.namespaces`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "adm-" + strings.ToLower(strings.ReplaceAll(t.Name()[len("TestIPPoolAdmission/"):], "_", "-"))
			name = name[:min(len(name), 50)] + "-" + string(rune('a'+i%26))
			_, err := e.berth.BerthV1alpha1().BerthIPPools().Create(t.Context(), &v1alpha1.BerthIPPool{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: tc.spec,
			}, metav1.CreateOptions{})
			checkAdmission(t, err, tc.wantErr)
		})
	}
	// Defaults are filled in by the schema.
	p, err := e.berth.BerthV1alpha1().BerthIPPools().Create(t.Context(), &v1alpha1.BerthIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: spec("192.0.2.0/28"),
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.AutoAssign == nil || !*p.Spec.AutoAssign || p.Spec.IPMode != v1alpha1.IPModeVIP {
		t.Errorf("defaults: autoAssign=%v ipMode=%q, want true and VIP", p.Spec.AutoAssign, p.Spec.IPMode)
	}
}

func catchAll(s v1alpha1.BerthIPPoolSpec) v1alpha1.BerthIPPoolSpec {
	s.AllowCatchAll = true
	return s
}

func spec(addrs ...string) v1alpha1.BerthIPPoolSpec {
	s := v1alpha1.BerthIPPoolSpec{}
	for _, a := range addrs {
		s.Addresses = append(s.Addresses, v1alpha1.AddressRange(a))
	}
	return s
}
