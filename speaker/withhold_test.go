package speaker

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/nodeport"
)

func TestUnforwarded(t *testing.T) {
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	node := netip.MustParseAddr("192.0.2.10")
	rule := func(addr netip.Addr, port uint16) nodeport.Rule {
		return nodeport.Rule{Address: addr, Protocol: nodeport.TCP, Port: port, NodeIP: node, NodePort: 30000 + port}
	}
	rules := []nodeport.Rule{rule(a, 80), rule(a, 443), rule(b, 80)}
	invalid := func(r nodeport.Rule) error { return &nodeport.InvalidRuleError{Rule: r, Reason: "no NodePort"} }
	tests := []struct {
		name string
		err  error
		want map[netip.Addr]string // address: substring of why
	}{
		{name: "success", want: map[netip.Addr]string{}},
		{name: "the table cannot be written: every address",
			err:  fmt.Errorf("sync forwarding: %w", errors.New("writing nftables table: operation not permitted")),
			want: map[netip.Addr]string{a: "operation not permitted", b: "operation not permitted"}},
		{name: "refused address",
			err:  fmt.Errorf("sync forwarding: %w", errors.Join(nil, &nodeport.RefusedError{Rules: []nodeport.Rule{rule(b, 80)}, Err: errors.New("ENOSPC")})),
			want: map[netip.Addr]string{b: "the kernel refused its forwarding rules: ENOSPC"}},
		{name: "one invalid port of two: the address stays",
			err:  fmt.Errorf("sync forwarding: %w", fmt.Errorf("validating rules: %w", errors.Join(invalid(rule(a, 80))))),
			want: map[netip.Addr]string{}},
		{name: "every port invalid",
			err: fmt.Errorf("sync forwarding: %w", errors.Join(
				fmt.Errorf("validating rules: %w", errors.Join(invalid(rule(a, 80)), invalid(rule(a, 443)))),
				&nodeport.RefusedError{Rules: []nodeport.Rule{rule(b, 80)}, Err: errors.New("ENOSPC")})),
			want: map[netip.Addr]string{a: "no NodePort", b: "ENOSPC"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := unforwarded(rules, tc.err)
			if len(got) != len(tc.want) {
				t.Fatalf("unforwarded = %v, want %v", got, tc.want)
			}
			for addr, why := range tc.want {
				if !strings.Contains(got[addr], why) {
					t.Errorf("%v: why %q, want it to contain %q", addr, got[addr], why)
				}
			}
		})
	}
}

func TestWithholding(t *testing.T) {
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	host := func(x netip.Addr) bgp.Advertisement { return bgp.Advertisement{Prefix: netip.PrefixFrom(x, 32)} }
	agg := bgp.Advertisement{Prefix: netip.MustParsePrefix("198.51.100.0/24")}
	plan := &Plan{
		Routes:  map[string][]bgp.Advertisement{"r1": {host(a), host(b), agg}, "r2": {host(b)}},
		L2Owned: []netip.Addr{a, b},
	}
	got := withholding(plan, map[netip.Addr]string{b: "refused"})
	prefixes := map[string][]string{}
	for peer, advs := range got.Routes {
		prefixes[peer] = []string{}
		for _, adv := range advs {
			prefixes[peer] = append(prefixes[peer], adv.Prefix.String())
		}
	}
	want := map[string][]string{"r1": {"198.51.100.1/32", "198.51.100.0/24"}, "r2": {}}
	if diff := cmp.Diff(want, prefixes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{a}, got.L2Owned, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("layer 2 (-want +got):\n%s", diff)
	}
	if len(plan.Routes["r1"]) != 3 || len(plan.L2Owned) != 2 {
		t.Errorf("withholding changed its input: %+v", plan)
	}
	if withholding(plan, nil) != plan {
		t.Errorf("nothing withheld: want the plan itself")
	}
}
