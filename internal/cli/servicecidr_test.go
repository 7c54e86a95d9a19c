package cli

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestServesServiceCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources []metav1.APIResource
		want      bool
	}{
		{"Kubernetes 1.33 and later", []metav1.APIResource{{Name: "ingresses"}, {Name: "servicecidrs"}}, true},
		{"older", []metav1.APIResource{{Name: "ingresses"}, {Name: "networkpolicies"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := kubefake.NewClientset()
			kube.Resources = []*metav1.APIResourceList{{GroupVersion: "networking.k8s.io/v1", APIResources: tc.resources}}
			got, err := ServesServiceCIDRs(kube.Discovery())
			if err != nil || got != tc.want {
				t.Errorf("ServesServiceCIDRs = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
