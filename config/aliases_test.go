package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// TestRequestAliases checks that MetalLB's, Cilium's and kube-vip's Service
// annotations steer Berth like its own, that equal values in several of
// them are accepted, and that disagreeing ones are an InvalidRequest naming
// both annotations.
func TestRequestAliases(t *testing.T) {
	const (
		mlbIPs     = "metallb.universe.tf/loadBalancerIPs"
		mlbIOIPs   = "metallb.io/loadBalancerIPs"
		mlbPool    = "metallb.universe.tf/address-pool"
		mlbIOPool  = "metallb.io/address-pool"
		mlbShare   = "metallb.universe.tf/allow-shared-ip"
		mlbIOShare = "metallb.io/allow-shared-ip"
		ciliumIPs  = "lbipam.cilium.io/ips"
		ciliumKey  = "lbipam.cilium.io/sharing-key"
		kubeVIPIPs = "kube-vip.io/loadbalancerIPs"
	)
	requested := func(ss ...string) func(*allocator.Request) {
		return func(r *allocator.Request) { r.Requested = addrs(ss...) }
	}
	dual := func(ss ...string) func(*allocator.Request) {
		return func(r *allocator.Request) {
			r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
			r.Requested = addrs(ss...)
		}
	}
	sharing := func(k string) func(*allocator.Request) {
		return func(r *allocator.Request) { r.SharingKey = k }
	}
	explicit := func(pools ...string) func(*allocator.Request) {
		return func(r *allocator.Request) { r.Pools, r.ExplicitPools = pools, true }
	}
	tests := []struct {
		name    string
		svc     *corev1.Service
		want    func(*allocator.Request)
		wantErr *wantErr
	}{
		// Each alias alone.
		{name: "metallb.universe.tf loadBalancerIPs", svc: service(annotate(mlbIPs, "198.51.100.20")), want: requested("198.51.100.20")},
		{name: "metallb.io loadBalancerIPs", svc: service(annotate(mlbIOIPs, "198.51.100.20")), want: requested("198.51.100.20")},
		{name: "cilium ips", svc: service(annotate(ciliumIPs, "198.51.100.20")), want: requested("198.51.100.20")},
		{name: "kube-vip loadbalancerIPs", svc: service(annotate(kubeVIPIPs, "198.51.100.20")), want: requested("198.51.100.20")},
		{name: "dual-stack alias", svc: service(families(prefer, v4, v6), annotate(mlbIPs, "198.51.100.20, 2001:db8:100::20")),
			want: dual("198.51.100.20", "2001:db8:100::20")},
		{name: "metallb.universe.tf address-pool", svc: service(annotate(mlbPool, "default-v4")), want: explicit("default-v4")},
		{name: "metallb.io address-pool", svc: service(annotate(mlbIOPool, "default-v6")), want: explicit("default-v6")},
		{name: "metallb.universe.tf allow-shared-ip", svc: service(annotate(mlbShare, " web ")), want: sharing("web")},
		{name: "metallb.io allow-shared-ip", svc: service(annotate(mlbIOShare, "web")), want: sharing("web")},
		{name: "cilium sharing-key", svc: service(annotate(ciliumKey, "web")), want: sharing("web")},

		// Several saying the same thing.
		{name: "berth and metallb addresses equal", svc: service(addresses("198.51.100.20"), annotate(mlbIPs, "198.51.100.20")),
			want: requested("198.51.100.20")},
		{name: "aliases equal in another order and spelling",
			svc:  service(families(prefer, v4, v6), annotate(mlbIPs, "2001:DB8:100::20,198.51.100.20"), annotate(kubeVIPIPs, "198.51.100.20, 2001:db8:100:0::20")),
			want: dual("2001:db8:100::20", "198.51.100.20")},
		{name: "alias and spec.loadBalancerIP agree", svc: service(annotate(ciliumIPs, "198.51.100.20"), lbIP("198.51.100.20")),
			want: requested("198.51.100.20")},
		{name: "both metallb pool spellings equal", svc: service(annotate(mlbPool, "default-v4"), annotate(mlbIOPool, " default-v4")),
			want: explicit("default-v4")},
		{name: "sharing keys equal up to spaces", svc: service(annotate(v1alpha1.AnnotationSharingKey, "k"), annotate(mlbShare, "k "), annotate(ciliumKey, " k")),
			want: sharing("k")},

		// Disagreements.
		{name: "berth addresses and metallb disagree", svc: service(addresses("198.51.100.20"), annotate(mlbIPs, "198.51.100.21")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `annotations berth.dev/addresses="198.51.100.20" and metallb.universe.tf/loadBalancerIPs="198.51.100.21" disagree`}},
		{name: "two aliases disagree", svc: service(annotate(ciliumIPs, "198.51.100.20"), annotate(kubeVIPIPs, "198.51.100.22")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `annotations lbipam.cilium.io/ips="198.51.100.20" and kube-vip.io/loadbalancerIPs="198.51.100.22" disagree`}},
		{name: "alias with one address more", svc: service(families(prefer, v4, v6), annotate(mlbIPs, "198.51.100.20"), annotate(mlbIOIPs, "198.51.100.20,2001:db8:100::1")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `metallb.universe.tf/loadBalancerIPs="198.51.100.20" and metallb.io/loadBalancerIPs="198.51.100.20,2001:db8:100::1" disagree`}},
		{name: "alias disagrees with spec.loadBalancerIP", svc: service(annotate(kubeVIPIPs, "198.51.100.20"), lbIP("198.51.100.21")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `spec.loadBalancerIP 198.51.100.21 disagrees with annotation kube-vip.io/loadbalancerIPs="198.51.100.20"`}},
		{name: "pools disagree", svc: service(pool("default-v4"), annotate(mlbPool, "default-v6")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `annotations berth.dev/pool="default-v4" and metallb.universe.tf/address-pool="default-v6" disagree`}},
		{name: "sharing keys disagree", svc: service(annotate(mlbShare, "a"), annotate(ciliumKey, "b")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `annotations metallb.universe.tf/allow-shared-ip="a" and lbipam.cilium.io/sharing-key="b" disagree`}},
		{name: "empty alias against a value", svc: service(annotate(mlbIOShare, ""), annotate(v1alpha1.AnnotationSharingKey, "k")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `berth.dev/sharing-key="k" and metallb.io/allow-shared-ip="" disagree`}},
		{name: "empty alias pool", svc: service(annotate(mlbPool, " ")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "annotation metallb.universe.tf/address-pool is empty"}},
		{name: "bad address in an alias", svc: service(annotate(ciliumIPs, "lb.example.com")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "lb.example.com" is not a plain IPv4 or IPv6 address`}},
	}
	cfg := config.For(standardPools())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cfg.Request(tc.svc, nil)
			if tc.wantErr != nil {
				checkRequestErr(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if diff := cmp.Diff(*want(tc.want), got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHoldingRequestAliases checks that an address held under another
// implementation's sharing annotation is recorded with that key, so that a
// shared pair stays shareable after the takeover, even when the request
// itself cannot be read because two annotations disagree.
func TestHoldingRequestAliases(t *testing.T) {
	cfg := config.For(standardPools())
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want string
	}{
		{"metallb", service(ingressIPs("198.51.100.9"), annotate("metallb.universe.tf/allow-shared-ip", " k ")), "k"},
		{"cilium", service(ingressIPs("198.51.100.9"), annotate("lbipam.cilium.io/sharing-key", "k")), "k"},
		{"berth first when they disagree", service(ingressIPs("198.51.100.9"),
			annotate(v1alpha1.AnnotationSharingKey, "b"), annotate("metallb.io/allow-shared-ip", "m")), "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := cfg.HoldingRequest(tc.svc, "foreign/x")
			if req.SharingKey != tc.want {
				t.Errorf("SharingKey = %q, want %q", req.SharingKey, tc.want)
			}
			if got := cfg.KeepRequest(tc.svc, nil); got.SharingKey != tc.want {
				t.Errorf("KeepRequest SharingKey = %q, want %q", got.SharingKey, tc.want)
			}
		})
	}
}
