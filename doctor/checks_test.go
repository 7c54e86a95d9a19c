package doctor

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestChecks covers what the end-to-end golden files cannot set up: the
// findings each check makes of a hand-made snapshot.
func TestChecks(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lease := func(renewed time.Duration) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "berth-controller"}, Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("c1"), LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime: &metav1.MicroTime{Time: now.Add(-renewed)},
		}}
	}
	restricted := func(annotation string, ips ...string) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s",
			Annotations: map[string]string{corev1.AnnotationLoadBalancerSourceRangesKey: annotation}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("berth.dev/lb")}}
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		return s
	}
	tests := []struct {
		name  string
		check func(*Snapshot) []Finding
		snap  Snapshot
		want  []string // "severity: substring of the summary", in order
	}{
		{"fresh lease", checkController, Snapshot{Lease: lease(5 * time.Second)}, []string{"ok: leader c1"}},
		{"expired lease", checkController, Snapshot{Lease: lease(time.Minute)}, []string{"FAIL: expired: its holder c1 stopped renewing"}},
		{"released lease, no deployment", checkController, Snapshot{Lease: &coordinationv1.Lease{}}, []string{"FAIL: no Deployment"}},
		{"short memberlist key", checkMemberlist, Snapshot{
			Speaker:               speakerDS(),
			BerthL2Advertisements: make([]l2Adv, 1),
			MemberlistSecret:      &corev1.Secret{Data: map[string][]byte{"secretkey": []byte("short")}},
		}, []string{"FAIL: of 5 bytes"}},
		{"layer 2 off", checkMemberlist, Snapshot{Speaker: speakerDS("--l2=false"), BerthL2Advertisements: make([]l2Adv, 1)}, []string{"ok: not needed: the speakers run with --l2=false"}},
		{"unparsable source range", checkSourceRanges, Snapshot{Services: []corev1.Service{restricted("10.0.0.0/8, nope", "192.0.2.1")}}, []string{"FAIL: refuses every client"}},
		{"range of each family", checkSourceRanges, Snapshot{Services: []corev1.Service{restricted("10.0.0.0/8,2001:db8::/32", "192.0.2.1", "2001:db8::1")}}, []string{"ok: 1 restricted Service"}},
		{"kube-proxy ipvs without layer 2", checkKubeProxy, Snapshot{KubeProxyConfigMap: &corev1.ConfigMap{Data: map[string]string{"config.conf": "mode: ipvs"}}}, []string{"warn: IPVS mode"}},
		{"kube-proxy default mode", checkKubeProxy, Snapshot{KubeProxyConfigMap: &corev1.ConfigMap{Data: map[string]string{"config.conf": "mode: \"\""}}}, []string{"ok: mode iptables"}},
		{"tainted nodes only", checkSpeakers, Snapshot{Speaker: speakerDS(), Nodes: []corev1.Node{{
			ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/os": "linux"}},
			Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoExecute}}},
		}}}, []string{"FAIL: no node is eligible"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.snap.Names, tt.snap.Now = DefaultNames(), now
			got := tt.check(&tt.snap)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d findings %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				sev, sub, _ := strings.Cut(w, ": ")
				if got[i].Severity.String() != sev || !strings.Contains(got[i].Summary, sub) {
					t.Errorf("finding %d = %s: %s, want %s: ...%s...", i, got[i].Severity, got[i].Summary, sev, sub)
				}
			}
		})
	}
}

type l2Adv = v1alpha1.BerthL2Advertisement

func speakerDS(args ...string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		Containers:   []corev1.Container{{Name: "speaker", Args: args}},
	}}}}
}
