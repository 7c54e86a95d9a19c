package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func allowCatchAll(p *v1alpha1.BerthIPPool) { p.Spec.AllowCatchAll = true }

// TestForSpecialPurpose checks the controller's own guard rails on pool
// addresses: the API server's rules may be missing (CRDs of an older
// release, objects admitted before), and CEL cannot see a range that spans
// a special-purpose block with both ends outside it.
func TestForSpecialPurpose(t *testing.T) {
	tests := []struct {
		name     string
		pool     *v1alpha1.BerthIPPool
		problems []string // substrings, in order; none means valid
	}{
		{name: "documentation range", pool: ippool("p", []string{"198.51.100.0/24", "2001:db8::/64"})},
		{name: "loopback", pool: ippool("p", []string{"127.0.0.1"}), problems: []string{`"127.0.0.1" lies inside the special-purpose block 127.0.0.0/8`}},
		{name: "metadata service", pool: ippool("p", []string{"169.254.169.254"}), problems: []string{`"169.254.169.254" lies inside the special-purpose block 169.254.0.0/16`}},
		{name: "link-local v6", pool: ippool("p", []string{"fe80::/64"}), problems: []string{`"fe80::/64" lies inside the special-purpose block fe80::/10`}},
		{name: "multicast", pool: ippool("p", []string{"ff02::1-ff02::5"}), problems: []string{`lies inside the special-purpose block ff00::/8`}},
		{name: "unspecified", pool: ippool("p", []string{"::"}), problems: []string{`"::" lies inside the special-purpose block ::/128`}},
		{name: "inside is refused even with allowCatchAll", pool: ippool("p", []string{"127.0.0.0/8"}, allowCatchAll), problems: []string{"lies inside"}},
		{name: "::/0 needs allowCatchAll", pool: ippool("p", []string{"::/0"}), problems: []string{`"::/0" spans the special-purpose block ::/128; narrow it, or set allowCatchAll: true`}},
		{name: "::/0 with allowCatchAll", pool: ippool("p", []string{"::/0", "0.0.0.0/0"}, allowCatchAll)},
		{name: "range spanning loopback with both ends outside (CEL cannot see it)", pool: ippool("p", []string{"126.0.0.0-128.0.0.0"}),
			problems: []string{`"126.0.0.0-128.0.0.0" spans the special-purpose block 127.0.0.0/8`}},
		{name: "one problem per entry", pool: ippool("p", []string{"0.0.0.0/0", "198.51.100.0/24", "169.254.1.1"}),
			problems: []string{`"0.0.0.0/0" spans`, `"169.254.1.1" lies inside`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := config.For([]*v1alpha1.BerthIPPool{tc.pool}).Pool("p")
			if len(got.Problems) != len(tc.problems) {
				t.Fatalf("Problems = %q, want %d matching %q", got.Problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(got.Problems[i], want) {
					t.Errorf("Problems[%d] = %q, want it to contain %q", i, got.Problems[i], want)
				}
			}
			draining := slices.ContainsFunc(config.For([]*v1alpha1.BerthIPPool{tc.pool}).AllocatorPools(), func(p allocator.Pool) bool { return p.Draining })
			if draining != (len(tc.problems) > 0) {
				t.Errorf("draining = %v, want %v", draining, len(tc.problems) > 0)
			}
		})
	}
}
