package speaker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

func TestObjectRef(t *testing.T) {
	for _, tc := range []struct {
		object string
		want   *corev1.ObjectReference
	}{
		{"Node/n1", &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "n1"}},
		{"Service/web/front", &corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "web", Name: "front"}},
		{"BGPPeer/tor", &corev1.ObjectReference{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "BGPPeer", Namespace: "default", Name: "tor"}},
		{"Service/no-namespace", nil},
		{"nonsense", nil},
	} {
		if diff := cmp.Diff(tc.want, objectRef(tc.object)); diff != "" {
			t.Errorf("objectRef(%q) (-want +got):\n%s", tc.object, diff)
		}
	}
}
