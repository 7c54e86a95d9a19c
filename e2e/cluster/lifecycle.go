package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/e2e/controlplane"
)

// connectNodes waits for kube-controller-manager to give every node its pod
// range, writes each node's CNI configuration, routes every node's range
// through that node on all others and in the root namespace (where the API
// server answers pods) and starts kube-proxy. The root namespace's routes go
// with the lab's bridge.
func (c *Cluster) connectNodes(ctx context.Context, proxyMode string) error {
	for _, n := range c.Nodes {
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			node, err := c.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || len(node.Spec.PodCIDRs) != 2 {
				return false, nil
			}
			if n.PodCIDR, err = netip.ParsePrefix(node.Spec.PodCIDRs[0]); err != nil {
				return false, err
			}
			n.PodCIDR6, err = netip.ParsePrefix(node.Spec.PodCIDRs[1])
			return err == nil, err
		})
		if err != nil {
			return fmt.Errorf("wait for %s's podCIDR: %w\n%s", n.Name, err, c.nodeLogs(n))
		}
	}
	for _, n := range c.Nodes {
		for _, r := range n.podRoutes() {
			if out, err := exec.CommandContext(ctx, "ip", append([]string{"route", "replace"}, r...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("route %v: %w: %s", r, err, out)
			}
		}
		conf := filepath.Join(n.cniConfDir(), "10-berth-e2e.conflist")
		if err := os.WriteFile(conf, []byte(n.cniConfig(filepath.Join(n.dir, "cni", "state"))), 0o644); err != nil {
			return err
		}
		// The node has no default route: give the Service range one, so
		// that host-network pods (the speaker) can reach ClusterIPs,
		// which kube-proxy translates after routing.
		if _, err := n.Host.Exec(ctx, "ip", "route", "replace", ServiceCIDR, "via", c.Lab.Gateway4.String()); err != nil {
			return err
		}
		if _, err := n.Host.Exec(ctx, "ip", "route", "replace", ServiceCIDR6, "via", c.Lab.Gateway6.String()); err != nil {
			return err
		}
		for _, m := range c.Nodes {
			if m == n {
				continue
			}
			for _, r := range m.podRoutes() {
				if _, err := n.Host.Exec(ctx, append([]string{"ip", "route", "replace"}, r...)...); err != nil {
					return err
				}
			}
		}
		if err := c.startKubeProxy(n, proxyMode); err != nil {
			return err
		}
	}
	return nil
}

// podRoutes are the routes (ip route arguments) to the node's pod ranges
// through the node.
func (n *Node) podRoutes() [][]string {
	return [][]string{
		{n.PodCIDR.String(), "via", n.Host.IPv4.String()},
		{n.PodCIDR6.String(), "via", n.Host.IPv6.String()},
	}
}

// waitReady waits until every node is Ready and the default ServiceAccount
// exists.
func (c *Cluster) waitReady(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := c.WaitNodeReady(ctx, n.Name, true); err != nil {
			return fmt.Errorf("%w\n%s", err, c.nodeLogs(n))
		}
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.Kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the default ServiceAccount: %w\n%s", err, c.kcm.Tail(40))
	}
	return nil
}

// WaitNodeReady waits until the node's Ready condition is ready (true) or
// not (false: False or Unknown).
func (c *Cluster) WaitNodeReady(ctx context.Context, name string, ready bool) error {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		node, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return (cond.Status == corev1.ConditionTrue) == ready, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for node %s Ready=%v: %w", name, ready, err)
	}
	return nil
}

// nodeLogs returns the ends of a node's logs, for failures.
func (c *Cluster) nodeLogs(n *Node) string {
	var b strings.Builder
	for _, p := range []*controlplane.Process{n.containerd, n.kubelet, n.kubeProxy, c.kcm} {
		if p != nil {
			fmt.Fprintf(&b, "--- %s of %s ---\n%s\n", p.Name(), n.Name, p.Tail(40))
		}
	}
	return b.String()
}

// Close stops everything New started and removes what it made: the
// controllers first (so nothing recreates pods), then every pod through its
// kubelet (which tears its network down), then the node daemons, leftover
// containers and shims, the mounts, the cgroups, the files, the control
// plane and the lab. It also cleans up after a New that failed half-way.
// Calling it again does nothing.
func (c *Cluster) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.dir != "" {
		errs = append(errs, c.teardown())
	}
	if c.ControlPlane != nil {
		if err := c.ControlPlane.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop control plane: %w", err))
		}
	}
	if c.Lab != nil {
		errs = append(errs, c.Lab.Close())
	}
	return errors.Join(errs...)
}

// teardown stops what runs on and for the nodes and removes the cluster's
// directory.
func (c *Cluster) teardown() error {
	c.scheduler.Stop(5 * time.Second)
	c.kcm.Stop(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if c.Kube != nil {
		if err := c.deleteAllPods(ctx); err != nil {
			// Not fatal: the kill below still stops every container.
			c.log.Error(err, "Cluster teardown: deleting the pods")
		}
	}
	var errs []error
	for _, n := range c.Nodes {
		n.kubeProxy.Stop(5 * time.Second)
		n.kubelet.Stop(5 * time.Second)
		if n.containerd.Running() {
			if out, err := n.ctr(ctx, "tasks", "ls", "-q"); err == nil {
				for _, id := range strings.Fields(out) {
					_, _ = n.ctr(ctx, "tasks", "kill", "-s", "SIGKILL", id)
				}
			}
		}
		n.containerd.Stop(5 * time.Second)
		// The shims outlive containerd by design; they run in the
		// node's namespace.
		killNetnsProcs(n.Host.Netns)
		n.killCgroupProcs()
		// Let the kernel reap the killed before the cgroups go.
		time.Sleep(200 * time.Millisecond)
		if err := unmountUnder(n.dir); err != nil {
			errs = append(errs, err)
		}
		if err := n.removeCgroupRoot(); err != nil {
			errs = append(errs, err)
		}
	}
	// The pods of a stopped node keep their network namespaces: nothing
	// ran CNI DEL for them. Everything in them is dead by now.
	for name := range podNetnsNames() {
		if !c.podNetns[name] {
			if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", name, err, out))
			}
		}
	}
	if err := unmountUnder(c.dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteAllPods deletes every pod with a second's grace and waits until the
// kubelets have confirmed their end.
func (c *Cluster) deleteAllPods(ctx context.Context) error {
	nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	grace, now := int64(1), int64(0)
	for _, ns := range nss.Items {
		_ = c.Kube.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
	}
	// A stopped node's kubelet never confirms that its pods are gone:
	// remove them outright (their processes go with the node's cgroups).
	for _, n := range c.Nodes {
		if n.kubelet.Running() {
			continue
		}
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			_ = c.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &now})
		}
	}
	return wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// podNetnsNames returns the names of the pod network namespaces (cni-*)
// that exist now.
func podNetnsNames() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			out[e.Name()] = true
		}
	}
	return out
}

// killNetnsProcs SIGKILLs every process in the named network namespace.
func killNetnsProcs(netns string) {
	target, err := os.Stat("/run/netns/" + netns)
	if err != nil {
		return
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err == nil && os.SameFile(st, target) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
