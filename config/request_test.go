package config_test

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// standardPools is the configuration most Request cases run against.
// Sorted names: broken, default-v4, default-v6, gold, retiring, team-a,
// tenants. A Service in namespace "default" without labels may use
// default-v4 and default-v6 only.
func standardPools() []*v1alpha1.BerthIPPool {
	return []*v1alpha1.BerthIPPool{
		ippool("default-v4", []string{"198.51.100.0/24"}, reserved("198.51.100.1")),
		ippool("default-v6", []string{"2001:db8:100::/64"}),
		ippool("team-a", []string{"203.0.113.128/26"}, autoAssign(false),
			allocation(v1alpha1.ServiceAllocation{Priority: 10, Namespaces: []string{"team-a"}})),
		ippool("gold", []string{"203.0.113.0/26"}, allocation(v1alpha1.ServiceAllocation{ServiceSelector: matchLabels("tier", "gold")})),
		ippool("tenants", []string{"203.0.113.64/27"}, allocation(v1alpha1.ServiceAllocation{NamespaceSelector: matchLabels("tenant", "yes")})),
		ippool("broken", []string{"192.0.2.0/25"}, reserved("192.0.2.200")), // invalid
		ippool("retiring", []string{"192.0.2.128/25"}, terminating),
	}
}

const brokenWhy = `pool "broken" is invalid (its Ready condition says why) and hands out no addresses`

type svcOpt func(*corev1.Service)

// service returns a handled LoadBalancer Service default/web with one TCP
// port, single-stack IPv4, as the API server would have defaulted it.
func service(opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Ports:          []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy: new(corev1.IPFamilyPolicySingleStack),
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func inNamespace(ns string) svcOpt { return func(s *corev1.Service) { s.Namespace = ns } }

func withLabels(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

func annotate(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func pool(v string) svcOpt      { return annotate(v1alpha1.AnnotationPool, v) }
func addresses(v string) svcOpt { return annotate(v1alpha1.AnnotationAddresses, v) }
func lbIP(v string) svcOpt      { return func(s *corev1.Service) { s.Spec.LoadBalancerIP = v } }

// families sets ipFamilyPolicy (nil when policy is "") and ipFamilies.
func families(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = nil
		if policy != "" {
			s.Spec.IPFamilyPolicy = &policy
		}
		s.Spec.IPFamilies = fams
	}
}

func ingress(entries ...corev1.LoadBalancerIngress) svcOpt {
	return func(s *corev1.Service) { s.Status.LoadBalancer.Ingress = entries }
}

func ingressIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func local(selector map[string]string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.Selector = selector
	}
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

const (
	v4 = corev1.IPv4Protocol
	v6 = corev1.IPv6Protocol
)

var (
	single    = corev1.IPFamilyPolicySingleStack
	prefer    = corev1.IPFamilyPolicyPreferDualStack
	require   = corev1.IPFamilyPolicyRequireDualStack
	tcp80     = []allocator.Port{{Protocol: "TCP", Port: 80}}
	bothPools = []string{"default-v4", "default-v6"}
)

// want returns the request for the default Service, changed by mod.
func want(mod func(*allocator.Request)) *allocator.Request {
	r := &allocator.Request{
		Service:   "default/web",
		Namespace: "default",
		Families:  []allocator.Family{allocator.IPv4},
		Ports:     tcp80,
		Pools:     bothPools,
	}
	if mod != nil {
		mod(r)
	}
	return r
}

type wantErr struct {
	reason string
	msg    string // the message must contain it
}

// checkRequestErr checks that err is the RequestError w describes.
func checkRequestErr(t *testing.T, err error, w *wantErr) {
	t.Helper()
	var re *config.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v (%T), want *config.RequestError %s", err, err, w.reason)
	}
	if re.Reason != w.reason || !strings.Contains(re.Msg, w.msg) {
		t.Errorf("error = %s: %q\nwant    %s: %q", re.Reason, re.Msg, w.reason, w.msg)
	}
	if re.Error() != re.Msg {
		t.Errorf("Error() = %q, want Msg %q", re.Error(), re.Msg)
	}
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name     string
		svc      *corev1.Service
		pools    []*v1alpha1.BerthIPPool // nil: standardPools
		noPools  bool
		nsLabels labels.Set
		want     *allocator.Request
		wantErr  *wantErr
	}{
		// Families.
		{name: "single-stack IPv4", svc: service(), want: want(nil)},
		{
			name: "nil ipFamilyPolicy takes the first family",
			svc:  service(families("", v6, v4)),
			want: want(func(r *allocator.Request) { r.Families = []allocator.Family{allocator.IPv6} }),
		},
		{
			name: "SingleStack IPv6",
			svc:  service(families(single, v6)),
			want: want(func(r *allocator.Request) { r.Families = []allocator.Family{allocator.IPv6} }),
		},
		{
			name: "no ipFamilies falls back to IPv4",
			svc:  service(families(prefer)),
			want: want(nil),
		},
		{
			name: "PreferDualStack keeps the order of ipFamilies",
			svc:  service(families(prefer, v6, v4)),
			want: want(func(r *allocator.Request) { r.Families = []allocator.Family{allocator.IPv6, allocator.IPv4} }),
		},
		{
			name: "PreferDualStack with one family",
			svc:  service(families(prefer, v4)),
			want: want(nil),
		},
		{
			name: "RequireDualStack requires all",
			svc:  service(families(require, v4, v6)),
			want: want(func(r *allocator.Request) {
				r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
				r.RequireAll = true
			}),
		},
		{
			name:    "RequireDualStack with one family",
			svc:     service(families(require, v6)),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "ipFamilyPolicy RequireDualStack needs two ipFamilies, the Service has 1"},
		},
		{
			name:    "RequireDualStack without ipFamilies",
			svc:     service(families(require)),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "ipFamilyPolicy RequireDualStack needs two ipFamilies, the Service has 0"},
		},

		// berth.dev/addresses and spec.loadBalancerIP.
		{
			name: "one requested address",
			svc:  service(addresses("198.51.100.10")),
			want: want(func(r *allocator.Request) { r.Requested = addrs("198.51.100.10") }),
		},
		{
			name: "two requested addresses, one per family",
			svc:  service(families(prefer, v4, v6), addresses("198.51.100.10,2001:db8:100::10")),
			want: want(func(r *allocator.Request) {
				r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
				r.Requested = addrs("198.51.100.10", "2001:db8:100::10")
			}),
		},
		{
			name: "spaces and empty entries are ignored",
			svc:  service(families(require, v6, v4), addresses(" 2001:db8:100::10 ,, 198.51.100.10 , ")),
			want: want(func(r *allocator.Request) {
				r.Families = []allocator.Family{allocator.IPv6, allocator.IPv4}
				r.RequireAll = true
				r.Requested = addrs("2001:db8:100::10", "198.51.100.10")
			}),
		},
		{
			name: "empty annotation requests nothing",
			svc:  service(addresses(" ")),
			want: want(nil),
		},
		{
			name:    "two addresses of one family",
			svc:     service(families(prefer, v4, v6), addresses("198.51.100.10, 198.51.100.11")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "at most one address per IP family may be requested, got 198.51.100.10 and 198.51.100.11"},
		},
		{
			name:    "the same address twice",
			svc:     service(addresses("198.51.100.10,198.51.100.10")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "at most one address per IP family may be requested"},
		},
		{
			name:    "unparsable address",
			svc:     service(addresses("198.51.100.300")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "198.51.100.300" is not a plain IPv4 or IPv6 address`},
		},
		{
			name:    "CIDR instead of an address",
			svc:     service(addresses("198.51.100.0/24")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "198.51.100.0/24" is not a plain IPv4 or IPv6 address`},
		},
		{
			name:    "zoned address",
			svc:     service(families(single, v6), addresses("fe80::1%eth0")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "fe80::1%eth0" is not a plain IPv4 or IPv6 address`},
		},
		{
			name:    "IPv4-mapped IPv6 address",
			svc:     service(families(prefer, v4, v6), addresses("::ffff:198.51.100.10")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "::ffff:198.51.100.10" is not a plain IPv4 or IPv6 address`},
		},
		{
			name:    "address of a family the Service does not have",
			svc:     service(addresses("2001:db8:100::10")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "requested address 2001:db8:100::10 is IPv6, but the Service's ipFamilies/ipFamilyPolicy give it only IPv4"},
		},
		{
			name:    "SingleStack drops the second family, so its address is refused",
			svc:     service(families(single, v6, v4), addresses("198.51.100.10")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "requested address 198.51.100.10 is IPv4, but the Service's ipFamilies/ipFamilyPolicy give it only IPv6"},
		},
		{
			name: "spec.loadBalancerIP alone",
			svc:  service(lbIP(" 198.51.100.20 ")),
			want: want(func(r *allocator.Request) { r.Requested = addrs("198.51.100.20") }),
		},
		{
			name: "spec.loadBalancerIP agreeing with the annotation",
			svc:  service(families(prefer, v4, v6), addresses("2001:db8:100::20,198.51.100.20"), lbIP("198.51.100.20")),
			want: want(func(r *allocator.Request) {
				r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
				r.Requested = addrs("2001:db8:100::20", "198.51.100.20")
			}),
		},
		{
			name: "spec.loadBalancerIP agreeing in another spelling",
			svc:  service(families(single, v6), addresses("2001:db8:100::20"), lbIP("2001:DB8:100:0::20")),
			want: want(func(r *allocator.Request) {
				r.Families = []allocator.Family{allocator.IPv6}
				r.Requested = addrs("2001:db8:100::20")
			}),
		},
		{
			name:    "spec.loadBalancerIP disagreeing with the annotation",
			svc:     service(addresses("198.51.100.20"), lbIP("198.51.100.21")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `spec.loadBalancerIP 198.51.100.21 disagrees with annotation berth.dev/addresses="198.51.100.20"; set only one`},
		},
		{
			name:    "unparsable spec.loadBalancerIP",
			svc:     service(lbIP("lb.example.com")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, `requested address "lb.example.com" is not a plain IPv4 or IPv6 address`},
		},

		// berth.dev/pool and pool eligibility.
		{
			name: "explicit pool",
			svc:  service(inNamespace("team-a"), pool("team-a")),
			want: want(func(r *allocator.Request) {
				r.Service, r.Namespace = "team-a/web", "team-a"
				r.Pools, r.ExplicitPools = []string{"team-a"}, true
			}),
		},
		{
			name: "explicit list keeps the user's order and trims spaces",
			svc:  service(pool(" default-v6 , default-v4 ")),
			want: want(func(r *allocator.Request) {
				r.Pools, r.ExplicitPools = []string{"default-v6", "default-v4"}, true
			}),
		},
		{
			name: "unknown pools in an explicit list are skipped",
			svc:  service(pool("nope,default-v4")),
			want: want(func(r *allocator.Request) {
				r.Pools, r.ExplicitPools = []string{"default-v4"}, true
			}),
		},
		{
			name:    "unknown pool",
			svc:     service(pool("nope")),
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, `no BerthIPPool may serve this Service: pool "nope" does not exist`},
		},
		{
			name:    "empty pool annotation",
			svc:     service(pool(" , ")),
			wantErr: &wantErr{v1alpha1.ReasonInvalidRequest, "annotation berth.dev/pool is empty"},
		},
		{
			name:    "invalid pool",
			svc:     service(pool("broken")),
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, "no BerthIPPool may serve this Service: " + brokenWhy},
		},
		{
			name: "invalid pool holding the Service's address",
			svc:  service(ingressIPs("192.0.2.5")),
			want: want(func(r *allocator.Request) {
				r.Pools = []string{"broken", "default-v4", "default-v6"}
				r.Current = addrs("192.0.2.5")
			}),
		},
		{
			name:    "terminating pool",
			svc:     service(pool("retiring")),
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, `no BerthIPPool may serve this Service: pool "retiring" is being deleted`},
		},
		{
			name: "terminating pool holding the Service's address, explicit",
			svc:  service(pool("retiring"), ingressIPs("192.0.2.130")),
			want: want(func(r *allocator.Request) {
				r.Pools, r.ExplicitPools = []string{"retiring"}, true
				r.Current = addrs("192.0.2.130")
			}),
		},
		{
			name: "terminating pool holding the Service's address, automatic",
			svc:  service(ingressIPs("192.0.2.130")),
			want: want(func(r *allocator.Request) {
				r.Pools = []string{"default-v4", "default-v6", "retiring"}
				r.Current = addrs("192.0.2.130")
			}),
		},
		{
			name:    "explicit pool that does not serve the namespace",
			svc:     service(pool("team-a")),
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, `no BerthIPPool may serve this Service: pool "team-a" does not serve namespace "default"`},
		},
		{
			name:    "every reason is listed",
			svc:     service(pool("team-a, gold,nope")),
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, `no BerthIPPool may serve this Service: pool "team-a" does not serve namespace "default"; pool "gold" does not serve this Service (its labels do not match the pool's serviceSelector); pool "nope" does not exist`},
		},
		{
			name:     "namespace admitted by label",
			svc:      service(inNamespace("shop")),
			nsLabels: labels.Set{"tenant": "yes"},
			want: want(func(r *allocator.Request) {
				r.Service, r.Namespace = "shop/web", "shop"
				r.Pools = []string{"default-v4", "default-v6", "tenants"}
			}),
		},
		{
			name: "Service admitted by label",
			svc:  service(withLabels("tier", "gold")),
			want: want(func(r *allocator.Request) { r.Pools = []string{"default-v4", "default-v6", "gold"} }),
		},
		{
			name: "autoAssign=false pools are offered too; the allocator decides",
			svc:  service(inNamespace("team-a")),
			want: want(func(r *allocator.Request) {
				r.Service, r.Namespace = "team-a/web", "team-a"
				r.Pools = []string{"default-v4", "default-v6", "team-a"}
			}),
		},
		{
			name:    "no pools at all",
			svc:     service(),
			noPools: true,
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, "no BerthIPPool exists; create one"},
		},
		{
			name:    "no pool admits the Service",
			svc:     service(),
			pools:   standardPools()[2:3], // team-a
			wantErr: &wantErr{v1alpha1.ReasonNoMatchingPool, `no BerthIPPool may serve this Service: pool "team-a" does not serve namespace "default"`},
		},

		// Requested addresses against pool eligibility.
		{
			name:    "requested address in a pool of another tenant",
			svc:     service(addresses("203.0.113.130")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 203.0.113.130 belongs to pool "team-a", which this Service may not use: pool "team-a" does not serve namespace "default"`},
		},
		{
			name:    "requested address through spec.loadBalancerIP in a pool of another tenant",
			svc:     service(lbIP("203.0.113.130")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 203.0.113.130 belongs to pool "team-a", which this Service may not use: pool "team-a" does not serve namespace "default"`},
		},
		{
			name:    "requested address in a pool for other Services",
			svc:     service(addresses("203.0.113.5")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 203.0.113.5 belongs to pool "gold", which this Service may not use: pool "gold" does not serve this Service (its labels do not match the pool's serviceSelector)`},
		},
		{
			name:    "requested address outside the named pools",
			svc:     service(inNamespace("team-a"), pool("team-a"), addresses("198.51.100.10")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 198.51.100.10 belongs to pool "default-v4", which is not among the pools this Service may use (team-a)`},
		},
		{
			name:    "requested address in no pool",
			svc:     service(addresses("203.0.113.200")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, "requested address 203.0.113.200 is in no BerthIPPool"},
		},
		{
			name:    "requested address in an invalid pool",
			svc:     service(addresses("192.0.2.5")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 192.0.2.5 belongs to pool "broken", which this Service may not use: ` + brokenWhy},
		},
		{
			name:    "requested address in a terminating pool",
			svc:     service(addresses("192.0.2.130")),
			wantErr: &wantErr{v1alpha1.ReasonRequestedAddressUnavailable, `requested address 192.0.2.130 belongs to pool "retiring", which this Service may not use: pool "retiring" is being deleted`},
		},
		{
			name: "requested address the Service already holds in a terminating pool",
			svc:  service(addresses("192.0.2.130"), ingressIPs("192.0.2.130")),
			want: want(func(r *allocator.Request) {
				r.Pools = []string{"default-v4", "default-v6", "retiring"}
				r.Requested = addrs("192.0.2.130")
				r.Current = addrs("192.0.2.130")
			}),
		},
		{
			name: "requested reserved address is left to the allocator",
			svc:  service(addresses("198.51.100.1")),
			want: want(func(r *allocator.Request) { r.Requested = addrs("198.51.100.1") }),
		},
		{
			name: "requested address in a tenant pool by its tenant",
			svc:  service(inNamespace("team-a"), addresses("203.0.113.130")),
			want: want(func(r *allocator.Request) {
				r.Service, r.Namespace = "team-a/web", "team-a"
				r.Pools = []string{"default-v4", "default-v6", "team-a"}
				r.Requested = addrs("203.0.113.130")
			}),
		},

		// Sharing, ports, backends, status.
		{
			name: "sharing key is trimmed",
			svc:  service(annotate(v1alpha1.AnnotationSharingKey, "  web-shared \t")),
			want: want(func(r *allocator.Request) { r.SharingKey = "web-shared" }),
		},
		{
			name: "ports default to TCP",
			svc: service(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Port: 53}, {Port: 53, Protocol: corev1.ProtocolUDP}, {Port: 9, Protocol: corev1.ProtocolSCTP}}
			}),
			want: want(func(r *allocator.Request) {
				r.Ports = []allocator.Port{{Protocol: "TCP", Port: 53}, {Protocol: "UDP", Port: 53}, {Protocol: "SCTP", Port: 9}}
			}),
		},
		{
			name: "no ports",
			svc:  service(func(s *corev1.Service) { s.Spec.Ports = nil }),
			want: want(func(r *allocator.Request) { r.Ports = nil }),
		},
		{
			name: "externalTrafficPolicy Local with a selector",
			svc:  service(local(map[string]string{"tier": "front", "app": "web"})),
			want: want(func(r *allocator.Request) { r.BackendKey = "selector:default/app=web,tier=front" }),
		},
		{
			name: "externalTrafficPolicy Local without a selector",
			svc:  service(local(nil)),
			want: want(func(r *allocator.Request) { r.BackendKey = "service:default/web" }),
		},
		{
			name: "externalTrafficPolicy Cluster has no backend key",
			svc: service(func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
				s.Spec.Selector = map[string]string{"app": "web"}
			}),
			want: want(nil),
		},
		{
			name: "current addresses from status; hostnames and garbage ignored",
			svc: service(ingress(
				corev1.LoadBalancerIngress{IP: "198.51.100.7"},
				corev1.LoadBalancerIngress{Hostname: "lb.example.com"},
				corev1.LoadBalancerIngress{IP: "2001:db8:100::7"},
				corev1.LoadBalancerIngress{IP: "::ffff:198.51.100.8"},
				corev1.LoadBalancerIngress{IP: "not-an-ip"},
			)),
			want: want(func(r *allocator.Request) { r.Current = addrs("198.51.100.7", "2001:db8:100::7", "198.51.100.8") }),
		},
		{
			name: "spec.externalIPs are ignored",
			svc:  service(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.130", "192.0.2.7"} }),
			want: want(nil),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pools := tc.pools
			if pools == nil && !tc.noPools {
				pools = standardPools()
			}
			cfg := config.For(pools)
			in := tc.svc.DeepCopy()
			got, err := cfg.Request(tc.svc, tc.nsLabels)
			if diff := cmp.Diff(in, tc.svc); diff != "" {
				t.Errorf("Request changed the Service (-before +after):\n%s", diff)
			}
			if tc.wantErr != nil {
				checkRequestErr(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if diff := cmp.Diff(*tc.want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBackendKey checks that the key is a function of the selector's
// content and namespace only: Go randomises map order, so building the same
// selector many times must give one key.
func TestBackendKey(t *testing.T) {
	cfg := config.For(standardPools())
	sel := map[string]string{"app": "web", "tier": "front", "zone": "a", "track": "stable", "team": "x"}
	keyOf := func(ns string, sel map[string]string) string {
		t.Helper()
		req, err := cfg.Request(service(inNamespace(ns), local(sel)), nil)
		if err != nil {
			t.Fatalf("Request: %v", err)
		}
		return req.BackendKey
	}
	first := keyOf("default", sel)
	keys := slices.Sorted(maps.Keys(sel))
	for i := range 50 {
		// Insert in a rotated order each time.
		m := make(map[string]string, len(sel))
		for j := range keys {
			k := keys[(i+j)%len(keys)]
			m[k] = sel[k]
		}
		if got := keyOf("default", m); got != first {
			t.Fatalf("BackendKey = %q, then %q for the same selector", first, got)
		}
	}
	if other := keyOf("other", sel); other == first {
		t.Errorf("BackendKey %q is the same in two namespaces; their pods differ", other)
	}
	if diff := keyOf("default", map[string]string{"app": "web"}); diff == first {
		t.Errorf("BackendKey %q is the same for different selectors", diff)
	}
}

func TestCurrentAddresses(t *testing.T) {
	tests := []struct {
		name string
		svc  *corev1.Service
		want []netip.Addr
	}{
		{name: "no status", svc: service()},
		{name: "hostname only", svc: service(ingress(corev1.LoadBalancerIngress{Hostname: "lb.example.com"}))},
		{name: "order kept", svc: service(ingressIPs("2001:db8:100::7", "198.51.100.7")), want: addrs("2001:db8:100::7", "198.51.100.7")},
		{name: "mapped address unmapped", svc: service(ingressIPs("::ffff:198.51.100.8")), want: addrs("198.51.100.8")},
		{name: "zoned address ignored (found by FuzzCompute)", svc: service(ingressIPs("fe80::%0", "2001:db8:100::9")), want: addrs("2001:db8:100::9")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, config.CurrentAddresses(tc.svc), cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("CurrentAddresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKey(t *testing.T) {
	if got := config.Key(service(inNamespace("team-a"))); got != "team-a/web" {
		t.Errorf("Key = %q, want team-a/web", got)
	}
}
