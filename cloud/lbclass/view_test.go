package lbclass

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/utils/ptr"
)

const aws Class = "berth.dev/aws"

// svc is a Service with a UID equal to its name, of type t and class c
// ("" for none).
func svc(name string, t v1.ServiceType, c string) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)}, Spec: v1.ServiceSpec{Type: t}}
	if c != "" {
		s.Spec.LoadBalancerClass = ptr.To(c)
	}
	return s
}

const lb, cip = v1.ServiceTypeLoadBalancer, v1.ServiceTypeClusterIP

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Class
		wantErr string
	}{
		{in: "", want: ""},
		{in: "berth.dev/aws", want: "berth.dev/aws"},
		{in: "aws", want: "aws"},
		{in: "berth.dev/a/b", wantErr: "load balancer class"},
		{in: "-bad", wantErr: "load balancer class"},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestServes(t *testing.T) {
	for _, tc := range []struct {
		class Class
		svc   *v1.Service
		want  bool
	}{
		{"", svc("a", lb, ""), true},
		{"", svc("a", lb, "berth.dev/aws"), false},
		{"", svc("a", cip, ""), false},
		{aws, svc("a", lb, "berth.dev/aws"), true},
		{aws, svc("a", lb, ""), false},
		{aws, svc("a", lb, "berth.dev/lb"), false},
		{aws, svc("a", cip, ""), false},
	} {
		if got := tc.class.Serves(tc.svc); got != tc.want {
			t.Errorf("Class(%q).Serves(type %s, class %v) = %v, want %v", tc.class, tc.svc.Spec.Type, ptr.Deref(tc.svc.Spec.LoadBalancerClass, "none"), got, tc.want)
		}
	}
}

// fin adds Berth's finalizer.
func fin(s *v1.Service) *v1.Service {
	s.Finalizers = append(s.Finalizers, Finalizer)
	return s
}

func TestInView(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  *v1.Service
		want bool
	}{
		{"the class", svc("a", lb, "berth.dev/aws"), true},
		{"the class, with the finalizer", fin(svc("a", lb, "berth.dev/aws")), true},
		{"unclassed: the managed controller's", svc("a", lb, ""), false},
		{"another class", svc("a", lb, "berth.dev/lb"), false},
		{"ours, type changed: the API server dropped the class", fin(svc("a", cip, "")), true},
		{"ours, type changed, cleaned up", svc("a", cip, ""), false},
		{"unclassed LoadBalancer with Berth's finalizer: the managed controller's", fin(svc("a", lb, "")), false},
	} {
		if got := inView(aws, tc.svc); got != tc.want {
			t.Errorf("%s: inView = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestViewEvents plays watch events through one View: the controller
// sees only its class, each Service presented without it and with Berth's
// finalizer shown as upstream's, follows a type change that drops the
// class, and forgets a Service that leaves.
func TestViewEvents(t *testing.T) {
	type out struct {
		Type       watch.EventType
		Name       string
		Class      *string
		Finalizers []string
	}
	up := []string{servicehelper.LoadBalancerCleanupFinalizer}
	steps := []struct {
		name string
		in   watch.Event
		want *out // nil: nothing delivered
	}{
		{"unclassed added: dropped", watch.Event{Type: watch.Added, Object: svc("u", lb, "")}, nil},
		{"other class added: dropped", watch.Event{Type: watch.Added, Object: svc("o", lb, "berth.dev/lb")}, nil},
		{"ours added: presented unclassed", watch.Event{Type: watch.Added, Object: svc("a", lb, "berth.dev/aws")}, &out{watch.Added, "a", nil, nil}},
		{"ours modified, with the finalizer: shown as upstream's", watch.Event{Type: watch.Modified, Object: fin(svc("a", lb, "berth.dev/aws"))}, &out{watch.Modified, "a", nil, up}},
		{"unclassed modified: dropped", watch.Event{Type: watch.Modified, Object: svc("u", lb, "")}, nil},
		{"unclassed deleted: dropped", watch.Event{Type: watch.Deleted, Object: svc("u", lb, "")}, nil},
		{"ours to ClusterIP, class dropped: still seen", watch.Event{Type: watch.Modified, Object: fin(svc("a", cip, ""))}, &out{watch.Modified, "a", nil, up}},
		{"its finalizer removed: leaves as deleted", watch.Event{Type: watch.Modified, Object: svc("a", cip, "")}, &out{watch.Deleted, "a", nil, nil}},
		{"then modified again: dropped", watch.Event{Type: watch.Modified, Object: svc("a", lb, "")}, nil},
		{"a ClusterIP Service made ours: enters", watch.Event{Type: watch.Modified, Object: svc("c", lb, "berth.dev/aws")}, &out{watch.Modified, "c", nil, nil}},
		{"ours deleted", watch.Event{Type: watch.Deleted, Object: svc("c", lb, "berth.dev/aws")}, &out{watch.Deleted, "c", nil, nil}},
		{"bookmark passes", watch.Event{Type: watch.Bookmark, Object: &v1.Service{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9"}}}, &out{watch.Bookmark, "", nil, nil}},
	}
	v := NewView(aws)
	for _, s := range steps {
		got, ok := v.event(s.in)
		var gotOut *out
		if ok {
			o := got.Object.(*v1.Service)
			gotOut = &out{got.Type, o.Name, o.Spec.LoadBalancerClass, o.Finalizers}
		}
		if diff := cmp.Diff(s.want, gotOut); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", s.name, diff)
		}
	}
}

func TestViewList(t *testing.T) {
	v := NewView(aws)
	v.in["left"] = true
	v.in["elsewhere"] = true // on another page
	l := &v1.ServiceList{Items: []v1.Service{
		*svc("u", lb, ""), *svc("a", lb, "berth.dev/aws"), *svc("o", lb, "berth.dev/lb"),
		*fin(svc("was", cip, "")), *svc("c", cip, ""), *svc("left", lb, ""),
	}}
	var got []string
	for _, s := range v.list(l).Items {
		if s.Spec.LoadBalancerClass != nil {
			t.Errorf("%s listed with class %s", s.Name, *s.Spec.LoadBalancerClass)
		}
		got = append(got, s.Name)
	}
	if diff := cmp.Diff([]string{"a", "was"}, got); diff != "" {
		t.Errorf("listed (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(map[types.UID]bool{"a": true, "was": true, "elsewhere": true}, v.in); diff != "" {
		t.Errorf("remembered (-want +got)\n%s", diff)
	}
}

// TestPatchesNeverCarryClass: what the service controller writes for a
// presented Service (its finalizer and status, through upstream's
// PatchService, as FinalizerTransport sends it) carries no spec, so the
// class the view hid is never written back, and names Berth's finalizer,
// never upstream's.
func TestPatchesNeverCarryClass(t *testing.T) {
	cached := present(svc("a", lb, "berth.dev/aws"))
	withFinalizer := cached.DeepCopy()
	withFinalizer.Finalizers = append(withFinalizer.Finalizers, servicehelper.LoadBalancerCleanupFinalizer)
	withStatus := cached.DeepCopy()
	withStatus.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{Hostname: "a.elb.example"}}
	withoutFinalizer := withFinalizer.DeepCopy()
	withoutFinalizer.Finalizers = nil
	for _, tc := range []struct {
		name     string
		old, new *v1.Service
		want     string
	}{
		{"add finalizer", cached, withFinalizer, `{"metadata":{"finalizers":["berth.dev/load-balancer-cleanup"]}}`},
		{"remove finalizer", withFinalizer, withoutFinalizer, `{"metadata":{"finalizers":null}}`},
		{"status", cached, withStatus, `{"status":{"loadBalancer":{"ingress":[{"hostname":"a.elb.example"}]}}}`},
	} {
		kube := fake.NewClientset(svc("a", lb, "berth.dev/aws"))
		if _, err := servicehelper.PatchService(kube.CoreV1(), tc.old, tc.new.DeepCopy()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var patches []string
		for _, a := range kube.Actions() {
			if p, ok := a.(k8stesting.PatchAction); ok {
				patches = append(patches, string(translatePatch(p.GetPatch())))
			}
		}
		if diff := cmp.Diff([]string{tc.want}, patches); diff != "" {
			t.Errorf("%s: patches (-want +got)\n%s", tc.name, diff)
		}
	}
}
