package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
)

// UninstallOptions configure Uninstall.
type UninstallOptions struct {
	// Namespace is Berth's namespace.
	Namespace string
	// ConfigMap is the ConfigMap that marks the uninstall.
	ConfigMap string
	// SpeakerSelector selects the speakers' Pods in Namespace; empty means
	// no speaker runs and there is nothing to wait for on the nodes.
	SpeakerSelector string
	// Pools says berth-controller runs, so that Uninstall waits for it to
	// remove the pools' finalizers.
	Pools bool
	// Timeout bounds the whole wait.
	Timeout time.Duration
	// Poll is how often progress is checked.
	Poll time.Duration
}

// Uninstall marks the uninstall and waits until every running speaker
// reported that its node holds none of Berth's state and no BerthIPPool carries
// Berth's finalizer. On timeout it names what is missing.
func Uninstall(ctx context.Context, kube kubernetes.Interface, berth versioned.Interface, opts UninstallOptions) error {
	log := logr.FromContextOrDiscard(ctx)
	cms := kube.CoreV1().ConfigMaps(opts.Namespace)
	if err := MarkUninstall(ctx, cms, opts.ConfigMap); err != nil {
		return err
	}
	log.Info("Marked the uninstall; waiting for the speakers and the controller", "configMap", opts.Namespace+"/"+opts.ConfigMap)
	var missing string
	lastLog := time.Now()
	err := wait.PollUntilContextTimeout(ctx, opts.Poll, opts.Timeout, true, func(ctx context.Context) (bool, error) {
		m, err := pending(ctx, kube, berth, opts)
		if err != nil {
			log.Error(err, "Check progress")
			return false, nil
		}
		missing = m
		if missing != "" && time.Since(lastLog) >= 10*time.Second {
			log.Info("Still waiting", "for", missing)
			lastLog = time.Now()
		}
		return missing == "", nil
	})
	if err != nil {
		if missing == "" {
			missing = "progress could not be read"
		}
		return fmt.Errorf("uninstall not prepared after %s: %s: %w", opts.Timeout, missing, err)
	}
	log.Info("Every speaker removed its node's state and no pool has Berth's finalizer")
	return nil
}

// pending says what the uninstall still waits for, "" if nothing.
func pending(ctx context.Context, kube kubernetes.Interface, berth versioned.Interface, opts UninstallOptions) (string, error) {
	var out []string
	if opts.SpeakerSelector != "" {
		cm, err := kube.CoreV1().ConfigMaps(opts.Namespace).Get(ctx, opts.ConfigMap, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("read ConfigMap %s: %w", opts.ConfigMap, err)
		}
		pods, err := kube.CoreV1().Pods(opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: opts.SpeakerSelector})
		if err != nil {
			return "", fmt.Errorf("list speakers: %w", err)
		}
		cleaned := Cleaned(cm)
		var nodes []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" && !cleaned[p.Spec.NodeName] {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		if len(nodes) > 0 {
			slices.Sort(nodes)
			out = append(out, fmt.Sprintf("the speakers on %s have not removed their nftables table and routes (on each: nft delete table inet berth)", strings.Join(nodes, ", ")))
		}
	}
	if opts.Pools {
		pools, err := berth.BerthV1alpha1().BerthIPPools().List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("list pools: %w", err)
		}
		var held []string
		if pools != nil {
			for _, p := range pools.Items {
				if slices.Contains(p.Finalizers, v1alpha1.PoolFinalizer) {
					held = append(held, p.Name)
				}
			}
		}
		if len(held) > 0 {
			out = append(out, fmt.Sprintf("BerthIPPools %s still carry %s; is berth-controller running?", strings.Join(held, ", "), v1alpha1.PoolFinalizer))
		}
	}
	return strings.Join(out, "; "), nil
}
