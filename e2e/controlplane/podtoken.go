package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// PodTokenKubeconfig is TokenKubeconfig with the token bound to the Pod of
// ServiceAccount namespace/name on node (NodePod), as the token the kubelet
// projects into a DaemonSet's Pod: the API server puts the Pod's node into
// the user's extra authentication.kubernetes.io/node-name, and the token
// stops working when the Pod is deleted.
func (cp *ControlPlane) PodTokenKubeconfig(ctx context.Context, namespace, name, node string) (string, error) {
	return cp.tokenKubeconfig(ctx, namespace, name, node)
}

// NodePod returns the Pod namespace/<account>-<node> of ServiceAccount
// account on node, creating it if it is missing, as a DaemonSet would (label
// app.kubernetes.io/name=<account>). No kubelet runs it: it stays Pending
// unless a test says otherwise, and mounts no token.
func NodePod(ctx context.Context, kube kubernetes.Interface, namespace, account, node string) (*corev1.Pod, error) {
	pods := kube.CoreV1().Pods(namespace)
	name := account + "-" + node
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": account}},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: account, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: account, Image: "registry.invalid/" + account}},
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		pod, err = pods.Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("pod of %s/%s on %s: %w", namespace, account, node, err)
	}
	return pod, nil
}
