package e2e

import (
	"context"
	"fmt"
	"github.com/berthlb/berth/internal/helmchart"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

func (e *env) startCCM(t *testing.T) *proc {
	t.Helper()
	return e.startCCMWith(t, "backend: pools\n", nil)
}

// startCCMWith runs berth-ccm, as ServiceAccount berth-ccm (see
// saKubeconfig), with the given cloud config, extra environment variables
// and extra flags (which override the defaults here).
func (e *env) startCCMWith(t *testing.T, cloudConfig string, environ []string, args ...string) *proc {
	t.Helper()
	p, _ := e.startCCMOnPorts(t, cloudConfig, environ, 0, func([]int) []string { return args })
	return p
}

// startCCMOnPorts is startCCMWith on 1+extra ports startOnFreePorts picks,
// started again on others when one was taken: ports[0] serves /readyz
// (--readyz-address on 127.0.0.1), ports[1:] are given to args.
func (e *env) startCCMOnPorts(t *testing.T, cloudConfig string, environ []string, extra int, args func(ports []int) []string) (*proc, []int) {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(cfgFile, []byte(cloudConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := e.saKubeconfig(t, "berth-ccm")
	if strings.Contains(cloudConfig, "backend: aws") {
		kubeconfig = e.awsCCMKubeconfig(t)
	}
	return startOnFreePorts(t, 1+extra, func(ports []int) *proc {
		cmd := exec.Command(berthBins.path(t, "berth-ccm"), append([]string{
			"--kubeconfig", kubeconfig,
			"--cloud-provider=berth",
			"--cloud-config", cfgFile,
			"--controllers=service",
			"--leader-elect=false",
			"--secure-port=0",
			fmt.Sprintf("--readyz-address=127.0.0.1:%d", ports[0]),
			"--v=2",
		}, args(ports)...)...)
		cmd.Env = berthEnviron(environ...)
		return startProc(t, "berth-ccm", cmd, syscall.SIGTERM)
	})
}

// waitIngress waits until the Service's status lists exactly want.
func (e *env) waitIngress(t *testing.T, ns, name string, want ...string) *corev1.Service {
	t.Helper()
	return e.waitService(t, ns, name, fmt.Sprintf("ingress %v", want), func(s *corev1.Service) bool {
		var got []string
		for _, a := range addrs(s) {
			got = append(got, a.String())
		}
		return slices.Equal(got, want)
	})
}

// TestCCM runs berth-ccm with the pools backend: the upstream service
// controller gives unclassed Services their addresses through the plugin,
// deletion releases them, classed Services are left alone, addresses
// survive a restart, and a Service the add-on controller claimed is
// refused with an Event.
func TestCCM(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const ns = "default"
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	e.pool(t, "ccm", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.10-203.0.113.12"}})
	top := t // the restarted berth-ccm must outlive the subtest that starts it
	ccm := e.startCCM(top)

	e.service(t, ns, "classed", withClass("berth.dev/lb"))
	e.service(t, ns, "a")
	s := e.waitIngress(t, ns, "a", "203.0.113.10")
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", m)
	}
	e.service(t, ns, "b")
	e.waitIngress(t, ns, "b", "203.0.113.11")

	t.Run("classed Service left alone", func(t *testing.T) {
		c, err := e.kube.CoreV1().Services(ns).Get(ctx, "classed", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Status.LoadBalancer.Ingress) > 0 || len(c.Finalizers) > 0 {
			t.Errorf("classed Service touched: ingress %v, finalizers %v", c.Status.LoadBalancer.Ingress, c.Finalizers)
		}
	})

	t.Run("delete releases the address", func(t *testing.T) {
		if err := e.kube.CoreV1().Services(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.kube.CoreV1().Services(ns).Get(ctx, "a", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("Service a not deleted (cleanup finalizer kept?): %v", err)
		}
		e.service(t, ns, "d")
		e.waitIngress(t, ns, "d", "203.0.113.10")
	})

	t.Run("addresses survive a restart", func(t *testing.T) {
		ccm.stop(syscall.SIGTERM)
		ccm = e.startCCM(top)
		// If the plugin answered e before replaying b and d, e would get
		// .10, the lowest address.
		e.service(t, ns, "e")
		e.waitIngress(t, ns, "e", "203.0.113.12")
		e.waitIngress(t, ns, "b", "203.0.113.11")
		e.waitIngress(t, ns, "d", "203.0.113.10")
	})

	t.Run("exhausted pool is reported as an Event", func(t *testing.T) {
		e.service(t, ns, "f")
		msgs := e.eventsWithin(t, ns, "f", "SyncLoadBalancerFailed", 20*time.Second)
		if len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), "PoolExhausted") {
			t.Errorf("events = %q, want one naming PoolExhausted", msgs)
		}
	})

	t.Run("Service claimed by the add-on controller is refused", func(t *testing.T) {
		e.claimedByAddOn(t, ns, "g")
		msgs := e.eventsWithin(t, ns, "g", "SyncLoadBalancerFailed", 20*time.Second)
		if len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), "--handle-unclassed=false") {
			t.Errorf("events = %q, want one explaining the conflict", msgs)
		}
		g, err := e.kube.CoreV1().Services(ns).Get(ctx, "g", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Status.LoadBalancer.Ingress) > 0 {
			t.Errorf("refused Service got ingress %v", g.Status.LoadBalancer.Ingress)
		}
	})
}

// claimedByAddOn creates a ClusterIP Service, writes berth-controller's
// condition on its status with berth-controller's field manager, as the
// add-on controller would, and only then makes it a LoadBalancer, so that
// berth-ccm sees the claim on its first look.
func (e *env) claimedByAddOn(t *testing.T, ns, name string) {
	t.Helper()
	ctx := t.Context()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := e.kube.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ac := corev1ac.Service(name, ns).WithStatus(corev1ac.ServiceStatus().WithConditions(metav1ac.Condition().
		WithType(v1alpha1.ServiceConditionAddressAllocated).WithStatus(metav1.ConditionFalse).
		WithReason("PoolExhausted").WithMessage("simulated").WithLastTransitionTime(metav1.Now())))
	if _, err := e.kube.CoreV1().Services(ns).ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: "berth-controller", Force: true}); err != nil {
		t.Fatalf("apply status as berth-controller: %v", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cur.Spec.Type = corev1.ServiceTypeLoadBalancer
		_, err = e.kube.CoreV1().Services(ns).Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("make %s a LoadBalancer: %v", name, err)
	}
}

// awsCCMKubeconfig is saKubeconfig for berth-ccm with the aws backend,
// whose extra rules (Node patch, EndpointSlice reads) the chart renders
// only for that backend, so they are not in manifests/: its RBAC comes from
// the chart rendered with the ccm-aws values, as `helm install` gives it.
func (e *env) awsCCMKubeconfig(t *testing.T) string {
	t.Helper()
	ms, err := helmchart.Render(loadBerthChart(t), helmchart.Options{Values: helmchart.ValueSets()["ccm-aws"]})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for i, m := range ms {
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("%02d.yaml", i)), []byte(m.Content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path, err := e.cp.ServiceAccountKubeconfigFrom(t.Context(), out, berthNS, "berth-ccm")
	if err != nil {
		t.Fatalf("kubeconfig of ServiceAccount berth-ccm (aws): %v", err)
	}
	return path
}
