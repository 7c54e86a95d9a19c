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

// TestHoldingRequestBackends: a foreign holder under externalTrafficPolicy
// Local carries its backends, so that Berth's own Services can share its
// address only with the same selector, as between two of Berth's.
func TestHoldingRequestBackends(t *testing.T) {
	cfg := config.For(standardPools())
	local := func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.Selector = map[string]string{"app": "web"}
	}
	held, _ := cfg.HoldingRequest(service(ingressIPs("198.51.100.9"), local), "foreign:x")
	own, err := cfg.Request(service(local), nil)
	if err != nil {
		t.Fatal(err)
	}
	if held.BackendKey == "" || held.BackendKey != own.BackendKey {
		t.Errorf("backend key of the holding %q, of the same Service served by Berth %q: want equal, not empty", held.BackendKey, own.BackendKey)
	}
	cluster, _ := cfg.HoldingRequest(service(ingressIPs("198.51.100.9")), "foreign:x")
	if cluster.BackendKey != "" {
		t.Errorf("externalTrafficPolicy Cluster: backend key %q, want none", cluster.BackendKey)
	}
}

// TestKeepRequest: what a Service whose request is invalid keeps after a
// restart: its status addresses in pools it may use, one per family, and
// nothing new.
func TestKeepRequest(t *testing.T) {
	cfg := config.For(standardPools())
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want []string
	}{
		{name: "its address in a pool it may use", svc: service(ingressIPs("198.51.100.7")), want: []string{"198.51.100.7"}},
		{name: "not one in a pool of another tenant", svc: service(ingressIPs("203.0.113.130"))},
		{name: "the tenant's own", svc: service(inNamespace("team-a"), ingressIPs("203.0.113.130")), want: []string{"203.0.113.130"}},
		{name: "outside every pool", svc: service(ingressIPs("10.0.0.1"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := cfg.KeepRequest(tc.svc, nil)
			var got []string
			for _, a := range req.Current {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Current (-want +got):\n%s", diff)
			}
			if !req.KeepOnly || req.Service != config.Key(tc.svc) || len(req.Requested) != 0 {
				t.Errorf("request %+v: want KeepOnly under the Service's own key, nothing requested", req)
			}
		})
	}
}
