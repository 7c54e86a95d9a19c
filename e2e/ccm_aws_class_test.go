package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cloudprovider "k8s.io/cloud-provider"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/berthlb/berth/cloud/aws/awsdouble"
	"github.com/berthlb/berth/cloud/lbclass"
)

// standInIP is the address the stand-in managed controller gives every
// Service it serves.
const standInIP = "203.0.113.7"

// standInManager is the stand-in's user agent, hence its field manager.
const standInManager = "managed-stand-in"

// standInCloud is the trivial cloud behind the stand-in managed
// controller: it gives every Service standInIP and records, per Service,
// which LoadBalancer methods it was called with.
type standInCloud struct {
	mu    sync.Mutex
	held  map[string]bool
	calls map[string][]string
}

var (
	_ cloudprovider.Interface    = (*standInCloud)(nil)
	_ cloudprovider.LoadBalancer = (*standInCloud)(nil)
)

func (c *standInCloud) record(svc *corev1.Service, call string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := svc.Namespace + "/" + svc.Name
	c.calls[key] = append(c.calls[key], call)
	switch call {
	case "ensure":
		c.held[key] = true
	case "delete":
		delete(c.held, key)
	}
}

// callsFor returns the methods the stand-in's cloud was called with for
// the Service.
func (c *standInCloud) callsFor(key string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls[key])
}

func (c *standInCloud) GetLoadBalancer(_ context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	c.record(svc, "get")
	c.mu.Lock()
	defer c.mu.Unlock()
	return &corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: standInIP}}}, c.held[svc.Namespace+"/"+svc.Name], nil
}

func (c *standInCloud) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

func (c *standInCloud) EnsureLoadBalancer(_ context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	c.record(svc, "ensure")
	return &corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: standInIP}}}, nil
}

func (c *standInCloud) UpdateLoadBalancer(_ context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) error {
	c.record(svc, "update")
	return nil
}

func (c *standInCloud) EnsureLoadBalancerDeleted(_ context.Context, _ string, svc *corev1.Service) error {
	c.record(svc, "delete")
	return nil
}

func (c *standInCloud) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (c *standInCloud) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return c, true }
func (c *standInCloud) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (c *standInCloud) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return nil, false }
func (c *standInCloud) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (c *standInCloud) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (c *standInCloud) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (c *standInCloud) ProviderName() string                                              { return "stand-in" }
func (c *standInCloud) HasClusterID() bool                                                { return true }

// startManagedStandIn runs, in the test process until the test ends, the
// upstream service controller of k8s.io/cloud-provider over standInCloud.
// It stands in for a managed service controller that cannot be turned off
// (EKS's, or upstream cloud-provider-aws), which cannot run here: like
// them it serves the unclassed LoadBalancer Services and uses the same
// service.kubernetes.io/load-balancer-cleanup finalizer.
func (e *env) startManagedStandIn(t *testing.T) *standInCloud {
	t.Helper()
	cfg := rest.CopyConfig(e.cp.RESTConfig())
	cfg.UserAgent = standInManager
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &standInCloud{held: map[string]bool{}, calls: map[string][]string{}}
	f := informers.NewSharedInformerFactory(kube, 0)
	sc, err := servicecontroller.New(c, kube, f.Core().V1().Services(), f.Core().V1().Nodes(), "e2e", utilfeature.DefaultFeatureGate)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sc.Run(ctx, 1, controllersmetrics.NewControllerManagerMetrics(standInManager)) })
	f.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		f.Shutdown()
	})
	return c
}

// finalizerManagers are the field managers that own the Service's
// finalizers.
func finalizerManagers(s *corev1.Service) []string {
	var out []string
	for _, mf := range s.ManagedFields {
		if mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:finalizers"`) {
			out = append(out, mf.Manager)
		}
	}
	return out
}

// TestCCMAWSClass runs berth-ccm with --load-balancer-class=berth.dev/aws
// beside a stand-in for a managed service controller that serves the
// unclassed Services (startManagedStandIn): berth-ccm makes an NLB only
// for the Service of its class and writes its status; the unclassed one
// gets only the stand-in's address; berth-ccm's finalizer is its own, so
// the stand-in never cleans up berth-ccm's Services; a Service of another
// class is left to neither; a Service of the class whose type changes away from
// LoadBalancer (which drops its class) loses its NLB and finalizer;
// deleting them removes berth-ccm's NLB and finalizer and the stand-in's
// finalizer, and the AWS double shows that berth-ccm never sent anything
// naming the other Services.
func TestCCMAWSClass(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	standIn := e.startManagedStandIn(t)
	srv := e.startCCMOnAWS(t, 2, "--load-balancer-class=berth.dev/aws")
	const ns = "default"
	other := e.service(t, ns, "other", withClass("berth.dev/lb"))
	managed := e.service(t, ns, "managed")
	ours := e.service(t, ns, "ours", withClass("berth.dev/aws"))

	lbOf := func(s awsdouble.State, svc *corev1.Service) *awsdouble.LoadBalancer {
		for i := range s.LoadBalancers {
			if s.LoadBalancers[i].Name == cloudprovider.DefaultLoadBalancerName(svc) {
				return &s.LoadBalancers[i]
			}
		}
		return nil
	}
	neverNamed := func(t *testing.T, svcs ...*corev1.Service) {
		t.Helper()
		for _, svc := range svcs {
			for _, sub := range []string{cloudprovider.DefaultLoadBalancerName(svc), svc.Namespace + "/" + svc.Name, string(svc.UID)} {
				if n := srv.Mentions(sub); n > 0 {
					t.Errorf("berth-ccm sent %d AWS requests naming %s of Service %s", n, sub, svc.Name)
				}
			}
		}
	}

	t.Run("each Service served by its own controller", func(t *testing.T) {
		s := waitAWS(t, srv, "the NLB of ours", func(s awsdouble.State) bool { return lbOf(s, ours) != nil })
		dns := lbOf(s, ours).DNSName
		got := e.waitService(t, ns, "ours", "hostname "+dns, func(s *corev1.Service) bool {
			in := s.Status.LoadBalancer.Ingress
			return len(in) == 1 && in[0].Hostname == dns
		})
		if c := got.Spec.LoadBalancerClass; c == nil || *c != "berth.dev/aws" {
			t.Errorf("ours has class %v; want berth.dev/aws kept", c)
		}
		if fm := finalizerManagers(got); len(fm) != 1 || fm[0] == standInManager || !slices.Equal(got.Finalizers, []string{lbclass.Finalizer}) {
			t.Errorf("ours' finalizers %v written by %v; want %s by berth-ccm alone", got.Finalizers, fm, lbclass.Finalizer)
		}
		got = e.waitIngress(t, ns, "managed", standInIP)
		if fm := finalizerManagers(got); !slices.Equal(fm, []string{standInManager}) || !slices.Equal(got.Finalizers, []string{servicehelper.LoadBalancerCleanupFinalizer}) {
			t.Errorf("managed's finalizers %v written by %v; want upstream's by the stand-in alone", got.Finalizers, fm)
		}
		if s := srv.Snapshot(); len(s.LoadBalancers) != 1 {
			t.Errorf("%d NLBs in AWS; want only ours'", len(s.LoadBalancers))
		}
		neverNamed(t, managed, other)
		for _, name := range []string{"ours", "other"} {
			if calls := standIn.callsFor(ns + "/" + name); len(calls) > 0 {
				t.Errorf("the stand-in was called for %s: %v", name, calls)
			}
		}
		o, err := e.kube.CoreV1().Services(ns).Get(ctx, "other", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Finalizers) > 0 || len(o.Status.LoadBalancer.Ingress) > 0 || o.ResourceVersion != other.ResourceVersion {
			t.Errorf("other (class berth.dev/lb) was written to: finalizers %v, status %+v", o.Finalizers, o.Status)
		}
	})

	t.Run("a Service of the class that stops being a LoadBalancer loses its NLB and finalizer", func(t *testing.T) {
		moved := e.service(t, ns, "moved", withClass("berth.dev/aws"))
		waitAWS(t, srv, "the NLB of moved", func(s awsdouble.State) bool { return lbOf(s, moved) != nil })
		e.waitService(t, ns, "moved", "Berth's finalizer", func(s *corev1.Service) bool { return slices.Equal(s.Finalizers, []string{lbclass.Finalizer}) })
		if _, err := e.kube.CoreV1().Services(ns).Patch(ctx, "moved", types.MergePatchType, []byte(`{"spec":{"type":"ClusterIP"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		got := e.waitService(t, ns, "moved", "no finalizer", func(s *corev1.Service) bool { return len(s.Finalizers) == 0 })
		if got.Spec.LoadBalancerClass != nil {
			t.Errorf("moved keeps class %s as a ClusterIP Service; the API server was expected to drop it", *got.Spec.LoadBalancerClass)
		}
		waitAWS(t, srv, "the NLB of moved to go", func(s awsdouble.State) bool { return lbOf(s, moved) == nil })
		if calls := standIn.callsFor(ns + "/moved"); len(calls) > 0 {
			t.Errorf("the stand-in was called for moved: %v", calls)
		}
	})

	t.Run("deleting: each controller cleans up its own", func(t *testing.T) {
		for _, name := range []string{"ours", "managed", "other"} {
			if err := e.kube.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitAWS(t, srv, "no AWS resources left", func(s awsdouble.State) bool {
			return len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Listeners)+len(s.SecurityGroups) == 0
		})
		e.waitServicesGone(t, ns, "ours", "managed", "other")
		if calls := standIn.callsFor(ns + "/managed"); !slices.Contains(calls, "ensure") || !slices.Contains(calls, "delete") {
			t.Errorf("the stand-in's calls for managed: %v; want it to have ensured and deleted it", calls)
		}
		for _, name := range []string{"ours", "other"} {
			if calls := standIn.callsFor(ns + "/" + name); len(calls) > 0 {
				t.Errorf("the stand-in was called for %s: %v", name, calls)
			}
		}
		neverNamed(t, managed, other)
		evs, err := e.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=other"})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			t.Errorf("Event on other, which neither controller serves: %s %s", ev.Reason, ev.Message)
		}
	})
}
