package cloud

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/api/v1alpha1"
)

const cluster = "kubernetes"

func pool(name string, mode v1alpha1.IPMode, addrs ...string) *v1alpha1.BerthIPPool {
	p := &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BerthIPPoolSpec{IPMode: mode}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

type svcOpt func(*v1.Service)

func created(sec int) svcOpt {
	return func(s *v1.Service) { s.CreationTimestamp = metav1.NewTime(time.Unix(1700000000+int64(sec), 0)) }
}

func ingress(ips ...string) svcOpt {
	return func(s *v1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

func class(c string) svcOpt { return func(s *v1.Service) { s.Spec.LoadBalancerClass = &c } }

func annotation(k, v string) svcOpt {
	return func(s *v1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

// addOn marks the Service as berth-controller's, as its status write does.
func addOn(s *v1.Service) {
	s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ServiceConditionAddressAllocated, Status: metav1.ConditionTrue, Reason: "Allocated",
	})
	s.ManagedFields = append(s.ManagedFields, metav1.ManagedFieldsEntry{
		Manager: addOnFieldManager, Operation: metav1.ManagedFieldsOperationApply, Subresource: "status",
	})
}

func service(name string, opts ...svcOpt) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("0c4b7f3e-1111-2222-3333-" + strings.Repeat("4", 12))},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports:      []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func node(name string) *v1.Node { return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

// newTestCloud returns a plugin whose pools backend has replayed svcs.
func newTestCloud(t *testing.T, pools []*v1alpha1.BerthIPPool, svcs ...*v1.Service) (*loadBalancers, context.Context) {
	t.Helper()
	logger, ctx := ktesting.NewTestContext(t)
	c, err := New(Config{Backend: BackendPools}, "", logger)
	if err != nil {
		t.Fatal(err)
	}
	c.pools.Restore(pools, svcs)
	lb, ok := c.LoadBalancer()
	if !ok {
		t.Fatal("LoadBalancer not supported")
	}
	return lb.(*loadBalancers), ctx
}

func ips(st *v1.LoadBalancerStatus) []string {
	if st == nil {
		return nil
	}
	var out []string
	for _, i := range st.Ingress {
		out = append(out, i.IP)
	}
	return out
}

// step is one call of the contract, checked against what it should return.
type step struct {
	op       string // get, ensure, delete, update
	svc      *v1.Service
	wantIPs  []string
	exists   bool   // for get
	wantErr  string // substring
	conflict bool   // the error is a *ConflictError
}

func TestLoadBalancerContract(t *testing.T) {
	p1 := pool("p1", "", "192.0.2.1-192.0.2.2")
	a, b, c := service("a", created(1)), service("b", created(2)), service("c", created(3))
	addon := service("addon", created(0), ingress("192.0.2.1"), addOn)
	for _, tc := range []struct {
		name     string
		pools    []*v1alpha1.BerthIPPool
		existing []*v1.Service
		steps    []step
	}{{
		name:  "ensure is idempotent and get is truthful",
		pools: []*v1alpha1.BerthIPPool{p1},
		steps: []step{
			{op: "get", svc: a, exists: false},
			{op: "ensure", svc: a, wantIPs: []string{"192.0.2.1"}},
			{op: "ensure", svc: a, wantIPs: []string{"192.0.2.1"}},
			{op: "get", svc: a, exists: true, wantIPs: []string{"192.0.2.1"}},
			{op: "update", svc: a},
			{op: "get", svc: a, exists: true, wantIPs: []string{"192.0.2.1"}},
		},
	}, {
		name:  "delete is idempotent and frees the address for the next Service",
		pools: []*v1alpha1.BerthIPPool{p1},
		steps: []step{
			{op: "ensure", svc: a, wantIPs: []string{"192.0.2.1"}},
			{op: "ensure", svc: b, wantIPs: []string{"192.0.2.2"}},
			{op: "delete", svc: a},
			{op: "delete", svc: a},
			{op: "get", svc: a, exists: false},
			{op: "delete", svc: c}, // never held anything
			{op: "ensure", svc: c, wantIPs: []string{"192.0.2.1"}},
			{op: "get", svc: b, exists: true, wantIPs: []string{"192.0.2.2"}},
		},
	}, {
		name:  "exhausted pool is an error naming the reason, and the Service holds nothing",
		pools: []*v1alpha1.BerthIPPool{p1},
		steps: []step{
			{op: "ensure", svc: a, wantIPs: []string{"192.0.2.1"}},
			{op: "ensure", svc: b, wantIPs: []string{"192.0.2.2"}},
			{op: "ensure", svc: c, wantErr: "PoolExhausted"},
			{op: "get", svc: c, exists: false},
		},
	}, {
		name:  "no pool at all",
		steps: []step{{op: "ensure", svc: a, wantErr: "NoMatchingPool"}},
	}, {
		name:  "requested address",
		pools: []*v1alpha1.BerthIPPool{p1},
		steps: []step{
			{op: "ensure", svc: service("r", annotation(v1alpha1.AnnotationAddresses, "192.0.2.2")), wantIPs: []string{"192.0.2.2"}},
			{op: "ensure", svc: service("s", annotation(v1alpha1.AnnotationAddresses, "192.0.2.2")), wantErr: "RequestedAddressUnavailable"},
			{op: "ensure", svc: service("t", annotation(v1alpha1.AnnotationAddresses, "198.51.100.1")), wantErr: "in no BerthIPPool"},
		},
	}, {
		name:     "add-on controller's Service is refused, and its address is never handed out",
		pools:    []*v1alpha1.BerthIPPool{p1},
		existing: []*v1.Service{addon},
		steps: []step{
			{op: "ensure", svc: addon, conflict: true, wantErr: "--handle-unclassed=false"},
			{op: "get", svc: addon, exists: false},
			{op: "update", svc: addon},
			{op: "delete", svc: addon},
			{op: "ensure", svc: a, wantIPs: []string{"192.0.2.2"}},
			{op: "ensure", svc: b, wantErr: "PoolExhausted"},
		},
	}, {
		name:  "classed Service is refused",
		pools: []*v1alpha1.BerthIPPool{p1},
		steps: []step{
			{op: "ensure", svc: service("k", class("berth.dev/lb")), conflict: true, wantErr: "loadBalancerClass"},
			{op: "get", svc: service("k", class("berth.dev/lb")), exists: false},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lb, ctx := newTestCloud(t, tc.pools, tc.existing...)
			nodes := []*v1.Node{node("n1"), node("n2")}
			for i, s := range tc.steps {
				before := s.svc.DeepCopy()
				nodesBefore := []*v1.Node{nodes[0].DeepCopy(), nodes[1].DeepCopy()}
				var st *v1.LoadBalancerStatus
				var exists bool
				var err error
				switch s.op {
				case "get":
					st, exists, err = lb.GetLoadBalancer(ctx, cluster, s.svc)
					if exists != s.exists {
						t.Errorf("step %d: get %s: exists = %v, want %v", i, s.svc.Name, exists, s.exists)
					}
				case "ensure":
					st, err = lb.EnsureLoadBalancer(ctx, cluster, s.svc, nodes)
				case "update":
					err = lb.UpdateLoadBalancer(ctx, cluster, s.svc, nodes)
				case "delete":
					err = lb.EnsureLoadBalancerDeleted(ctx, cluster, s.svc)
				}
				if diff := cmp.Diff(before, s.svc); diff != "" {
					t.Errorf("step %d: %s mutated the Service (-before +after):\n%s", i, s.op, diff)
				}
				if diff := cmp.Diff(nodesBefore, nodes); diff != "" {
					t.Errorf("step %d: %s mutated the Nodes:\n%s", i, s.op, diff)
				}
				if s.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), s.wantErr) {
						t.Errorf("step %d: %s %s: err = %v, want it to contain %q", i, s.op, s.svc.Name, err, s.wantErr)
					}
					var ce *ConflictError
					if errors.As(err, &ce) != s.conflict {
						t.Errorf("step %d: conflict = %v, want %v (err %v)", i, !s.conflict, s.conflict, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("step %d: %s %s: %v", i, s.op, s.svc.Name, err)
				}
				if diff := cmp.Diff(s.wantIPs, ips(st)); diff != "" {
					t.Errorf("step %d: %s %s: addresses (-want +got):\n%s", i, s.op, s.svc.Name, diff)
				}
			}
		})
	}
}

func TestIPModeFromPool(t *testing.T) {
	lb, ctx := newTestCloud(t, []*v1alpha1.BerthIPPool{pool("proxy", v1alpha1.IPModeProxy, "198.51.100.7/32")})
	st, err := lb.EnsureLoadBalancer(ctx, cluster, service("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	proxy := v1.LoadBalancerIPModeProxy
	want := &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "198.51.100.7", IPMode: &proxy}}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestLoadBalancerName(t *testing.T) {
	lb, ctx := newTestCloud(t, nil)
	s := service("a")
	got := lb.GetLoadBalancerName(ctx, cluster, s)
	if want := "a0c4b7f3e111122223333444444444444"[:32]; got != want {
		t.Errorf("name = %q, want %q", got, want)
	}
	if again := lb.GetLoadBalancerName(ctx, cluster, s.DeepCopy()); again != got {
		t.Errorf("name not stable: %q then %q", got, again)
	}
}

// TestRestartStability: a new plugin given Services with status keeps their
// addresses, whatever order the service controller then calls it in, and
// the older of two Services claiming one address keeps it.
func TestRestartStability(t *testing.T) {
	pools := []*v1alpha1.BerthIPPool{pool("p1", "", "192.0.2.0/29")}
	for _, tc := range []struct {
		name     string
		existing []*v1.Service
		calls    []*v1.Service // in this order, after the restart
		want     map[string][]string
	}{{
		name: "addresses kept even when a new Service is served first",
		existing: []*v1.Service{
			service("old1", created(1), ingress("192.0.2.5")),
			service("old2", created(2), ingress("192.0.2.0")),
		},
		calls: []*v1.Service{
			service("new", created(9)),
			service("old2", created(2), ingress("192.0.2.0")),
			service("old1", created(1), ingress("192.0.2.5")),
		},
		want: map[string][]string{"new": {"192.0.2.1"}, "old1": {"192.0.2.5"}, "old2": {"192.0.2.0"}},
	}, {
		name: "older Service wins a duplicated address",
		existing: []*v1.Service{
			service("younger", created(5), ingress("192.0.2.3")),
			service("older", created(1), ingress("192.0.2.3")),
		},
		calls: []*v1.Service{
			service("younger", created(5), ingress("192.0.2.3")),
			service("older", created(1), ingress("192.0.2.3")),
		},
		want: map[string][]string{"older": {"192.0.2.3"}, "younger": {"192.0.2.0"}},
	}, {
		name: "add-on and other classes' addresses are held, not served",
		existing: []*v1.Service{
			service("addon", created(1), ingress("192.0.2.0"), addOn),
			service("other", created(2), ingress("192.0.2.1"), class("example.com/lb")),
		},
		calls: []*v1.Service{service("new", created(9))},
		want:  map[string][]string{"new": {"192.0.2.2"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lb, ctx := newTestCloud(t, pools, tc.existing...)
			got := map[string][]string{}
			for _, s := range tc.calls {
				st, err := lb.EnsureLoadBalancer(ctx, cluster, s, nil)
				if err != nil {
					t.Fatalf("ensure %s: %v", s.Name, err)
				}
				got[s.Name] = ips(st)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotReady: before the replay, calls wait (here: until ctx ends)
// rather than answer from an empty allocator.
func TestNotReady(t *testing.T) {
	c, err := New(Config{Backend: BackendPools}, "", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	lb, _ := c.LoadBalancer()
	if _, err := lb.EnsureLoadBalancer(ctx, cluster, service("a"), nil); err == nil {
		t.Fatal("ensure answered before the replay")
	}
	if _, exists, err := lb.GetLoadBalancer(ctx, cluster, service("a")); err == nil || exists {
		t.Fatalf("get answered before the replay: %v %v", exists, err)
	}
}

func TestUnsupportedCapabilities(t *testing.T) {
	c, err := New(Config{Backend: BackendPools}, "", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Instances(); ok {
		t.Error("Instances supported")
	}
	if _, ok := c.InstancesV2(); ok {
		t.Error("InstancesV2 supported")
	}
	if _, ok := c.Zones(); ok {
		t.Error("Zones supported")
	}
	if _, ok := c.Clusters(); ok {
		t.Error("Clusters supported")
	}
	if _, ok := c.Routes(); ok {
		t.Error("Routes supported")
	}
	if c.ProviderName() != "berth" {
		t.Errorf("ProviderName = %q", c.ProviderName())
	}
}
