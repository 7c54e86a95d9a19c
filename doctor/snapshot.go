package doctor

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
)

// Names say where Berth is installed; DefaultNames are the chart's.
type Names struct {
	// Namespace is Berth's namespace.
	Namespace string
	// Lease is the controller's leader Lease in Namespace.
	Lease string
	// Controller is the controller's Deployment in Namespace.
	Controller string
	// Speaker is the speakers' DaemonSet in Namespace.
	Speaker string
	// LoadBalancerClass is the class the controller handles.
	LoadBalancerClass string
}

// DefaultNames returns the names the chart and manifests/ install.
func DefaultNames() Names {
	return Names{
		Namespace: "berth-system", Lease: "berth-controller", Controller: "berth-controller",
		Speaker: "berth-speaker", LoadBalancerClass: v1alpha1.DefaultLoadBalancerClass,
	}
}

// Snapshot is everything the checks read, as found in the cluster. A nil
// pointer means the object does not exist.
type Snapshot struct {
	Names Names
	Now   time.Time
	// CRDs are the names of the installed CRDs of group berth.dev.
	CRDs                   []string
	Lease                  *coordinationv1.Lease
	Controller             *appsv1.Deployment
	Speaker                *appsv1.DaemonSet
	SpeakerPods            []corev1.Pod
	Nodes                  []corev1.Node
	MemberlistSecret       *corev1.Secret
	Pools                  []v1alpha1.BerthIPPool
	BerthBGPAdvertisements []v1alpha1.BerthBGPAdvertisement
	BerthL2Advertisements  []v1alpha1.BerthL2Advertisement
	Services               []corev1.Service
	KubeProxyConfigMap     *corev1.ConfigMap
}

// Clients are the API clients Gather reads with.
type Clients struct {
	Kube  kubernetes.Interface
	Berth versioned.Interface
	CRDs  apiextensionsclient.Interface
}

// Gather reads a Snapshot. Objects that do not exist are left nil or
// empty; any other error (no permission, an unreachable API server) is
// returned.
func Gather(ctx context.Context, c Clients, names Names, now time.Time) (*Snapshot, error) {
	s := &Snapshot{Names: names, Now: now}
	crds, err := c.CRDs.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list CRDs: %w", err)
	}
	for _, crd := range crds.Items {
		if crd.Spec.Group == v1alpha1.SchemeGroupVersion.Group {
			s.CRDs = append(s.CRDs, crd.Name)
		}
	}
	ns := names.Namespace
	steps := []struct {
		what string
		f    func() error
	}{
		{"Lease", func() (err error) {
			s.Lease, err = orNil(c.Kube.CoordinationV1().Leases(ns).Get(ctx, names.Lease, metav1.GetOptions{}))
			return
		}},
		{"controller Deployment", func() (err error) {
			s.Controller, err = orNil(c.Kube.AppsV1().Deployments(ns).Get(ctx, names.Controller, metav1.GetOptions{}))
			return
		}},
		{"speaker DaemonSet", func() (err error) {
			s.Speaker, err = orNil(c.Kube.AppsV1().DaemonSets(ns).Get(ctx, names.Speaker, metav1.GetOptions{}))
			return
		}},
		{"kube-proxy ConfigMap", func() (err error) {
			s.KubeProxyConfigMap, err = orNil(c.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}))
			return
		}},
	}
	for _, st := range steps {
		if err := st.f(); err != nil {
			return nil, fmt.Errorf("get the %s: %w", st.what, err)
		}
	}
	if s.Speaker != nil {
		if err := s.gatherSpeakers(ctx, c); err != nil {
			return nil, err
		}
	}
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Nodes: %w", err)
	}
	s.Nodes = nodes.Items
	svcs, err := c.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	for _, svc := range svcs.Items {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			s.Services = append(s.Services, svc)
		}
	}
	if s.hasCRDs() {
		if err := s.gatherBerth(ctx, c.Berth); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Snapshot) gatherSpeakers(ctx context.Context, c Clients) error {
	sel, err := metav1.LabelSelectorAsSelector(s.Speaker.Spec.Selector)
	if err != nil {
		return fmt.Errorf("speaker DaemonSet's selector: %w", err)
	}
	pods, err := c.Kube.CoreV1().Pods(s.Names.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("list speaker Pods: %w", err)
	}
	s.SpeakerPods = pods.Items
	if secret := speakerArg(s.Speaker, "memberlist-secret", "berth-memberlist"); secret != "" {
		s.MemberlistSecret, err = orNil(c.Kube.CoreV1().Secrets(s.Names.Namespace).Get(ctx, secret, metav1.GetOptions{}))
		if err != nil {
			return fmt.Errorf("get the memberlist Secret: %w", err)
		}
	}
	return nil
}

func (s *Snapshot) gatherBerth(ctx context.Context, c versioned.Interface) error {
	pools, err := c.BerthV1alpha1().BerthIPPools().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list BerthIPPools: %w", err)
	}
	s.Pools = pools.Items
	bgp, err := c.BerthV1alpha1().BerthBGPAdvertisements().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list BerthBGPAdvertisements: %w", err)
	}
	s.BerthBGPAdvertisements = bgp.Items
	l2, err := c.BerthV1alpha1().BerthL2Advertisements().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list BerthL2Advertisements: %w", err)
	}
	s.BerthL2Advertisements = l2.Items
	return nil
}

// orNil turns a NotFound Get into a nil object and no error.
func orNil[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}
