package cluster

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// EchoPort is the port the echo server listens on.
const EchoPort = 8080

// EchoShutdownDelay is how long an echo pod keeps serving after SIGTERM.
const EchoShutdownDelay = 3 * time.Second

// EchoContainer is the echo server's container: it answers on EchoPort with
// its Pod's and Node's names and the client address it saw.
func EchoContainer() corev1.Container {
	return corev1.Container{
		Name:            "echo",
		Image:           EchoImage,
		ImagePullPolicy: corev1.PullNever,
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: EchoPort}},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			// Serve on for a moment after SIGTERM, as an application
			// behind a load balancer should: the load balancer (Berth's
			// withdrawal, the routers' convergence) needs that moment to
			// stop sending new connections to a pod being evicted.
			{Name: "SHUTDOWN_DELAY", Value: EchoShutdownDelay.String()},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(EchoPort)}},
			PeriodSeconds: 1,
		},
		SecurityContext: restricted(),
	}
}

// EchoPod is a Pod running the echo server on the named node.
func EchoPod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			Containers:                    []corev1.Container{EchoContainer()},
			TerminationGracePeriodSeconds: new(int64(1)),
		},
	}
}

// GetPod is a Pod on the named node that GETs url once it answers (the echo
// image's client mode) and then succeeds, printing the answer to its log.
func GetPod(name, node, url string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "get",
				Image:           EchoImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"get", url},
				SecurityContext: restricted(),
			}},
		},
	}
}

// restricted is a securityContext that the "restricted" Pod Security level
// admits.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		RunAsNonRoot:             new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// PodLog returns the log of the pod's first container, through the API
// server and the pod's kubelet.
func (c *Cluster) PodLog(ctx context.Context, ns, name string) (string, error) {
	data, err := c.Kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("log of %s/%s: %w", ns, name, err)
	}
	return string(data), nil
}

// EchoDeployment is a Deployment of replicas echo pods labelled app=name,
// spread over the nodes (at most one more on any node than on another).
// Its pods leave a NotReady or unreachable node after 5 seconds rather than
// the default 5 minutes, so failover scenarios see them rescheduled.
func EchoDeployment(name string, replicas int32) *appsv1.Deployment {
	grace := int64(EchoShutdownDelay/time.Second) + 2
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{EchoContainer()},
					TerminationGracePeriodSeconds: &grace,
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew:           1,
						TopologyKey:       corev1.LabelHostname,
						WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: labels},
						// A dead node's domain does not count, so its
						// pods are rescheduled onto the others.
						NodeTaintsPolicy: new(corev1.NodeInclusionPolicyHonor),
					}},
					Tolerations: []corev1.Toleration{
						{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(5))},
						{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(5))},
					},
				},
			},
		},
	}
}
