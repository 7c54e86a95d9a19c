package migrate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestFirstLast checks the addresses reserved for allowFirstLastIPs "No":
// the first and last of each CIDR, none for CIDRs of one or two addresses.
func TestFirstLast(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		want []v1alpha1.AddressRange
	}{
		{"198.51.100.0/24", []v1alpha1.AddressRange{"198.51.100.0", "198.51.100.255"}},
		{"198.51.100.64/26", []v1alpha1.AddressRange{"198.51.100.64", "198.51.100.127"}},
		{"198.51.100.8/30", []v1alpha1.AddressRange{"198.51.100.8", "198.51.100.11"}},
		{"198.51.100.8/31", nil},
		{"198.51.100.8/32", nil},
		{"10.0.0.0/8", []v1alpha1.AddressRange{"10.0.0.0", "10.255.255.255"}},
		{"2001:db8::/64", []v1alpha1.AddressRange{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"}},
		{"2001:db8::/123", []v1alpha1.AddressRange{"2001:db8::", "2001:db8::1f"}},
		{"2001:db8::/127", nil},
		{"not a cidr", nil},
	} {
		if diff := cmp.Diff(tc.want, firstLast(tc.cidr)); diff != "" {
			t.Errorf("firstLast(%q) (-want +got):\n%s", tc.cidr, diff)
		}
	}
}
