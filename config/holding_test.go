package config_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func TestHoldingRequest(t *testing.T) {
	cfg := config.For(standardPools())
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		svc           *corev1.Service
		wantRequested []netip.Addr
		wantFamilies  []allocator.Family
		wantExtra     []netip.Addr
		wantSharing   string
	}{
		{name: "no status holds nothing", svc: service()},
		{name: "outside every pool is not held", svc: service(ingressIPs("10.0.0.1"))},
		{name: "one per family, in order", svc: service(ingressIPs("198.51.100.7", "2001:db8:100::7", "198.51.100.8")),
			wantRequested: addrs("198.51.100.7", "2001:db8:100::7"), wantFamilies: []allocator.Family{allocator.IPv4, allocator.IPv6},
			wantExtra: addrs("198.51.100.8")},
		{name: "any pool, whatever its selectors say", svc: service(ingressIPs("203.0.113.130")),
			wantRequested: addrs("203.0.113.130"), wantFamilies: []allocator.Family{allocator.IPv4}},
		{name: "sharing key kept", svc: service(ingressIPs("198.51.100.9"), annotate(v1alpha1.AnnotationSharingKey, " k ")),
			wantRequested: addrs("198.51.100.9"), wantFamilies: []allocator.Family{allocator.IPv4}, wantSharing: "k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, extra := cfg.HoldingRequest(tc.svc, "foreign:x")
			opts := cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})}
			if req.Service != "foreign:x" || !req.ExplicitPools || !cmp.Equal(req.Pools, cfg.Names()) || req.SharingKey != tc.wantSharing {
				t.Errorf("request %+v: want identity foreign:x over every pool, sharing key %q", req, tc.wantSharing)
			}
			if diff := cmp.Diff(tc.wantRequested, req.Requested, opts); diff != "" {
				t.Errorf("Requested (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(req.Requested, req.Current, opts); diff != "" {
				t.Errorf("Current must equal Requested (-Requested +Current):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFamilies, req.Families, opts); diff != "" {
				t.Errorf("Families (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantExtra, extra, opts); diff != "" {
				t.Errorf("extra (-want +got):\n%s", diff)
			}
			if len(req.Ports) != len(tc.svc.Spec.Ports) {
				t.Errorf("ports %v for %v", req.Ports, tc.svc.Spec.Ports)
			}
		})
	}
}
