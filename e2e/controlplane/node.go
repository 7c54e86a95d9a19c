package controlplane

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeConfig describes a Node for CreateNodeWith.
type NodeConfig struct {
	// Name is the Node's name and its Hostname address.
	Name string
	// Addresses become InternalIP addresses, in order.
	Addresses []netip.Addr
	// Labels are set on the Node as given.
	Labels map[string]string
	// Unschedulable sets spec.unschedulable.
	Unschedulable bool
	// NotReady makes the Ready condition False instead of True.
	NotReady bool
	// ProviderID sets spec.providerID (aws:///zone/i-... for the AWS
	// backend's tests).
	ProviderID string
}

// CreateNode creates a ready Node with the given InternalIP addresses, as a
// kubelet would on registration; no kubelet runs in this control plane.
func CreateNode(ctx context.Context, client kubernetes.Interface, name string, addrs ...netip.Addr) (*corev1.Node, error) {
	return CreateNodeWith(ctx, client, NodeConfig{Name: name, Addresses: addrs})
}

// CreateNodeWith creates the Node that cfg describes and then writes its
// status (addresses and the Ready condition) through the status subresource,
// which is the only way the API server accepts it.
func CreateNodeWith(ctx context.Context, client kubernetes.Interface, cfg NodeConfig) (*corev1.Node, error) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Labels: cfg.Labels},
		Spec:       corev1.NodeSpec{Unschedulable: cfg.Unschedulable, ProviderID: cfg.ProviderID},
	}
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", cfg.Name, err)
	}
	ready := corev1.ConditionTrue
	reason := "KubeletReady"
	if cfg.NotReady {
		ready, reason = corev1.ConditionFalse, "KubeletNotReady"
	}
	now := metav1.Now()
	created.Status.Conditions = []corev1.NodeCondition{{
		Type:               corev1.NodeReady,
		Status:             ready,
		Reason:             reason,
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: cfg.Name}}
	for _, a := range cfg.Addresses {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	updated, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("set status of node %s: %w", cfg.Name, err)
	}
	return updated, nil
}
