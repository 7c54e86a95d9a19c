package speaker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/berthlb/berth/api/v1alpha1"
)

// refRecorder records the object reference, type and reason of each Event.
type refRecorder struct {
	record.FakeRecorder
	got []string
}

func (r *refRecorder) Event(obj runtime.Object, typ, reason, _ string) {
	ref := obj.(*corev1.ObjectReference)
	r.got = append(r.got, ref.Kind+" ns="+ref.Namespace+" "+ref.Name+" uid="+string(ref.UID)+" "+typ+" "+reason)
}

// TestEventsAttach checks that every Event of the speaker points at its
// object by UID, and that a cluster-scoped object's reference has no
// namespace, as kubectl describe looks for it.
func TestEventsAttach(t *testing.T) {
	rec := &refRecorder{}
	e := newEventReporter(rec)
	e.uid = func(kind, ns, name string) types.UID { return types.UID(kind + "-" + ns + "-" + name) }
	ctx := t.Context()
	e.owner(ctx, "demo/web", "node n1 answers ARP for 198.51.100.1")
	e.forwarding(ctx, "demo/web", true, "withdrew")
	e.forwarding(ctx, "demo/web", false, "announces again")
	e.session(ctx, "tor", true, "up")
	e.session(ctx, "tor", false, "down")
	e.report(ctx, "BerthBGPAdvertisement/all", "bad community")
	want := []string{
		"Service ns=demo web uid=Service-demo-web Normal L2Owner",
		"Service ns=demo web uid=Service-demo-web Warning ForwardingFailed",
		"Service ns=demo web uid=Service-demo-web Normal ForwardingRestored",
		"BerthBGPPeer ns= tor uid=BerthBGPPeer--tor Normal BGPSessionUp",
		"BerthBGPPeer ns= tor uid=BerthBGPPeer--tor Warning BGPSessionDown",
		"BerthBGPAdvertisement ns= all uid=BerthBGPAdvertisement--all Warning SpeakerConfigProblem",
	}
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
}

func TestObjectRef(t *testing.T) {
	for _, tc := range []struct {
		object string
		want   *corev1.ObjectReference
	}{
		{"Node/n1", &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "n1"}},
		{"Service/web/front", &corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "web", Name: "front"}},
		{"BerthBGPPeer/tor", &corev1.ObjectReference{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "BerthBGPPeer", Name: "tor"}},
		{"Service/no-namespace", nil},
		{"nonsense", nil},
	} {
		if diff := cmp.Diff(tc.want, objectRef(tc.object)); diff != "" {
			t.Errorf("objectRef(%q) (-want +got):\n%s", tc.object, diff)
		}
	}
}
