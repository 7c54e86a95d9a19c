package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
)

// TestSpeakerAdvertisementNamespaceSelector runs two speakers under the
// chart's RBAC with an advertisement that admits only namespaces labelled
// exposure=internet: a Service in such a namespace reaches the router, one
// in an unlabelled namespace does not, whatever its own labels, until the
// operator labels its namespace (the speakers watch Namespaces).
func TestSpeakerAdvertisementNamespaceSelector(t *testing.T) {
	sl := newSpeakerLab(t, 2)
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}})
	sl.bgpPeer("r1-v4", r1.Host.IPv4, routerASN, nodeASN)
	sl.advertise("internet", v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{
		IPPools:           []string{"main"},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"exposure": "internet"}},
	}})
	sl.startSpeakers()
	sl.e.namespace(t, "public", map[string]string{"exposure": "internet"})
	sl.e.namespace(t, "tenant", nil)
	waitSessions(t, r1, sl.addrs(false))

	sl.e.service(t, "public", "web")
	// The tenant labels its own Service: that must not be enough.
	sl.e.service(t, "tenant", "app", func(s *corev1.Service) { s.Labels = map[string]string{"exposure": "internet"} })
	web, _ := split(sl.e.waitAllocated(t, "public", "web", 1))
	app, _ := split(sl.e.waitAllocated(t, "tenant", "app", 1))
	waitNextHops(t, r1.Host, hostRoute(web), sl.addrs(false), settle)
	holdsFor(t, 3*time.Second, "the unlabelled namespace's Service stays off the router", func() error {
		if got := frr.KernelNextHops(t, r1.Host, hostRoute(app)); len(got) != 0 {
			return fmt.Errorf("%s routed via %v", app, got)
		}
		return nil
	})

	// The operator labels the namespace: its Service is announced.
	patch := []byte(`{"metadata":{"labels":{"exposure":"internet"}}}`)
	if _, err := sl.e.kube.CoreV1().Namespaces().Patch(context.Background(), "tenant", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	d := waitNextHops(t, r1.Host, hostRoute(app), sl.addrs(false), settle)
	t.Logf("MEASURED: namespace labelled to route at the router: %v", d)
}
