package aws

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// ServiceConditionUnsupportedAnnotations is the Service condition that
// lists the aws-load-balancer annotations Berth does not implement: True
// while there are some, False once they are gone.
const ServiceConditionUnsupportedAnnotations = "berth.dev/UnsupportedAnnotations"

// Event and condition reasons.
const (
	reasonUnsupported  = "UnsupportedAnnotation"
	reasonAllSupported = "AllSupported"
)

// reportFieldManager owns the condition in the Service's status.
const reportFieldManager = "berth-ccm-aws"

// kubeReporter writes the condition with server-side apply on the status
// subresource (so it never touches the fields the service controller
// owns) and records a Warning Event when the list changes.
type kubeReporter struct {
	kube   kubernetes.Interface
	events record.EventRecorder
}

// Unsupported implements Reporter. It writes nothing when the condition
// already says the same, so it costs no API call on most syncs.
func (k kubeReporter) Unsupported(ctx context.Context, svc *v1.Service, annotations []string) error {
	status, reason, msg := unsupportedCondition(annotations)
	var cur *metav1.Condition
	for i := range svc.Status.Conditions {
		if svc.Status.Conditions[i].Type == ServiceConditionUnsupportedAnnotations {
			cur = &svc.Status.Conditions[i]
		}
	}
	if cur == nil && len(annotations) == 0 {
		return nil
	}
	if cur != nil && cur.Status == status && cur.Message == msg && cur.ObservedGeneration == svc.Generation {
		return nil
	}
	if len(annotations) > 0 {
		k.events.Event(svc, v1.EventTypeWarning, reasonUnsupported, msg)
	}
	since := metav1.Now()
	if cur != nil && cur.Status == status {
		since = cur.LastTransitionTime
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(corev1ac.ServiceStatus().WithConditions(
		metav1ac.Condition().WithType(ServiceConditionUnsupportedAnnotations).WithStatus(status).
			WithReason(reason).WithMessage(msg).WithObservedGeneration(svc.Generation).WithLastTransitionTime(since)))
	if _, err := k.kube.CoreV1().Services(svc.Namespace).ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: reportFieldManager, Force: true}); err != nil {
		return fmt.Errorf("write condition %s: %w", ServiceConditionUnsupportedAnnotations, err)
	}
	return nil
}

// unsupportedCondition is the condition's status, reason and message.
func unsupportedCondition(annotations []string) (metav1.ConditionStatus, string, string) {
	if len(annotations) == 0 {
		return metav1.ConditionFalse, reasonAllSupported, "berth-ccm implements every aws-load-balancer annotation the Service has"
	}
	return metav1.ConditionTrue, reasonUnsupported, fmt.Sprintf(
		"berth-ccm does not implement %s; the load balancer is made without (see Berth's docs/cloud.md)",
		strings.Join(annotations, ", "))
}
