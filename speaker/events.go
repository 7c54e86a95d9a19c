package speaker

import (
	"context"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/berthlb/berth/api/v1alpha1"
)

// eventReporter turns plan problems into Events, once per change of the
// problem's text, so that a standing problem does not flood the API.
type eventReporter struct {
	rec record.EventRecorder
	// uid finds an object's UID (empty if unknown), so that an Event
	// attaches to that object and not to a later one of the same name.
	uid  func(kind, namespace, name string) types.UID
	mu   sync.Mutex
	last *problemMemo
}

func newEventReporter(rec record.EventRecorder) *eventReporter {
	return &eventReporter{rec: rec, last: newProblemMemo(maxRememberedProblems)}
}

func (e *eventReporter) report(ctx context.Context, object, problem string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.last.changed(object, problem) {
		return
	}
	logr.FromContextOrDiscard(ctx).Info("Configuration problem", "object", object, "problem", problem)
	ref := objectRef(object)
	if ref == nil {
		return
	}
	e.withUID(ref)
	e.rec.Event(ref, corev1.EventTypeWarning, "SpeakerConfigProblem", problem)
}

// withUID sets ref's UID, if known.
func (e *eventReporter) withUID(ref *corev1.ObjectReference) {
	if e.uid != nil {
		ref.UID = e.uid(ref.Kind, ref.Namespace, ref.Name)
	}
}

// Reasons of the Events about BGP sessions and forwarding.
const (
	ReasonSessionUp          = "BGPSessionUp"
	ReasonSessionDown        = "BGPSessionDown"
	ReasonForwardingFailed   = "ForwardingFailed"
	ReasonForwardingRestored = "ForwardingRestored"
)

// session records, on the BerthBGPPeer, that this node's session with it went
// up or down.
func (e *eventReporter) session(_ context.Context, peer string, up bool, message string) {
	ref := objectRef("BerthBGPPeer/" + peer)
	e.withUID(ref)
	typ, reason := corev1.EventTypeWarning, ReasonSessionDown
	if up {
		typ, reason = corev1.EventTypeNormal, ReasonSessionUp
	}
	e.rec.Event(ref, typ, reason, message)
}

// forwarding records, on a Service ("namespace/name"), that this node
// withdrew one of its addresses because its forwarding failed (warning),
// or announces it again.
func (e *eventReporter) forwarding(_ context.Context, service string, warning bool, message string) {
	ref := objectRef("Service/" + service)
	if ref == nil {
		return
	}
	e.withUID(ref)
	typ, reason := corev1.EventTypeNormal, ReasonForwardingRestored
	if warning {
		typ, reason = corev1.EventTypeWarning, ReasonForwardingFailed
	}
	e.rec.Event(ref, typ, reason, message)
}

// owner records that this node now answers for one of a Service's
// addresses.
func (e *eventReporter) owner(_ context.Context, service, message string) {
	if ref := objectRef("Service/" + service); ref != nil {
		e.withUID(ref)
		e.rec.Event(ref, corev1.EventTypeNormal, "L2Owner", message)
	}
}

// objectRef turns a plan's object name ("Kind/name" or
// "Service/namespace/name") into a reference Events can point at. A
// cluster-scoped object's reference has no namespace, as kubectl describe
// looks for it; the recorder puts its Events in default.
func objectRef(object string) *corev1.ObjectReference {
	kind, rest, ok := strings.Cut(object, "/")
	if !ok {
		return nil
	}
	if kind == "Node" {
		return &corev1.ObjectReference{APIVersion: "v1", Kind: kind, Name: rest}
	}
	if kind == "Service" {
		ns, name, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		return &corev1.ObjectReference{APIVersion: "v1", Kind: kind, Namespace: ns, Name: name}
	}
	return &corev1.ObjectReference{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: kind, Name: rest}
}

// objectUID finds an object's UID in the speaker's caches, for Events.
func (s *Speaker) objectUID(kind, namespace, name string) types.UID {
	switch kind {
	case "BerthBGPPeer":
		return uidOf(s.listers.peers.Get(name))
	case "BerthBGPAdvertisement":
		return uidOf(s.listers.bgpAdvs.Get(name))
	case "BerthL2Advertisement":
		if s.listers.l2Advs != nil {
			return uidOf(s.listers.l2Advs.Get(name))
		}
	case "BerthIPPool":
		return uidOf(s.listers.pools.Get(name))
	case "Node":
		return uidOf(s.listers.nodes.Get(name))
	case "Service":
		return uidOf(s.listers.services.Services(namespace).Get(name))
	}
	return ""
}

func uidOf[T metav1.Object](obj T, err error) types.UID {
	if err != nil {
		return ""
	}
	return obj.GetUID()
}
