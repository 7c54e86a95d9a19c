package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// startKubeProxy starts the node's kube-proxy in proxyMode (nftables or
// iptables) inside the node's network namespace.
func (c *Cluster) startKubeProxy(n *Node, proxyMode string) error {
	var err error
	n.kubeProxy, err = startProc(n.dir, "kube-proxy", n.Host.Netns, c.kubeProxyArgs(n, "--proxy-mode="+proxyMode)...)
	return err
}

// kubeProxyArgs is the node's kube-proxy command line, extra appended.
func (c *Cluster) kubeProxyArgs(n *Node, extra ...string) []string {
	return append([]string{c.bins.KubeProxy,
		"--kubeconfig=" + c.ControlPlane.Kubeconfig(),
		"--hostname-override=" + n.Name,
		"--cluster-cidr=" + c.ClusterCIDR.String() + "," + c.ClusterCIDR6.String(),
		"--nodeport-addresses=" + netip.PrefixFrom(n.Host.IPv4, 32).String() + "," + netip.PrefixFrom(n.Host.IPv6, 128).String(),
		// A network namespace cannot set the conntrack sysctls.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=" + n.kubeProxyHealthz().String(),
		"--metrics-bind-address=127.0.0.1:10249",
		"--oom-score-adj=0",
	}, extra...)
}

// kubeProxyHealthz is where the node's kube-proxy serves /healthz.
func (n *Node) kubeProxyHealthz() netip.AddrPort { return netip.AddrPortFrom(n.Host.IPv4, 10256) }

// SetKubeProxyMode reconfigures every node's kube-proxy to proxyMode
// (nftables or iptables) on the running cluster, as an operator switching
// modes would: each kube-proxy stops, `kube-proxy --cleanup` removes the
// rules of every mode, and kube-proxy starts again in the new mode. It
// returns once every kube-proxy reports healthy (it has synced the rules
// of every Service) and no rule of the other mode is left.
func (c *Cluster) SetKubeProxyMode(ctx context.Context, proxyMode string) error {
	for _, n := range c.Nodes {
		if err := n.kubeProxy.Stop(5 * time.Second); err != nil {
			return fmt.Errorf("%s: stop kube-proxy: %w", n.Name, err)
		}
		argv := append([]string{"nsenter", "--net=/run/netns/" + n.Host.Netns, "--"}, c.kubeProxyArgs(n, "--cleanup")...)
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: kube-proxy --cleanup: %w\n%s", n.Name, err, out)
		}
		if err := c.startKubeProxy(n, proxyMode); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	hc := &http.Client{Timeout: time.Second}
	for _, n := range c.Nodes {
		url := "http://" + n.kubeProxyHealthz().String() + "/healthz"
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			if !n.kubeProxy.Running() {
				return false, n.kubeProxy.ExitError()
			}
			resp, err := hc.Get(url)
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			return fmt.Errorf("%s: kube-proxy in %s mode not healthy: %w\n%s", n.Name, proxyMode, err, n.kubeProxy.Tail(30))
		}
		// Healthy is not synced: a kube-proxy that has not yet listed
		// the Services reports healthy too. The default/kubernetes
		// Service always exists, so its rules in the mode's tables show
		// the first sync done.
		var modes []string
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			modes, err = kubeProxyModes(ctx, n)
			return slices.Equal(modes, []string{proxyMode}), err
		})
		if err != nil {
			return fmt.Errorf("%s: kube-proxy in %s mode, yet the rules for default/kubernetes are %v's: %w", n.Name, proxyMode, modes, err)
		}
	}
	return nil
}

// KubeProxyRules returns the rules kube-proxy in proxyMode wrote on the
// node: nftables mode's table ip kube-proxy ("" while there is none), or
// iptables mode's nat table as iptables-save shows it (nft does not show
// iptables-nft's comments, which name the Services).
func (n *Node) KubeProxyRules(ctx context.Context, proxyMode string) (string, error) {
	if proxyMode == "iptables" {
		return n.Host.Exec(ctx, "iptables-save", "-t", "nat")
	}
	tables, err := n.Host.Exec(ctx, "nft", "list", "tables")
	if err != nil || !strings.Contains(tables, "table ip kube-proxy") {
		return "", err
	}
	return n.Host.Exec(ctx, "nft", "list", "table", "ip", "kube-proxy")
}

// kubeProxyModes lists the modes whose kube-proxy rules for the
// default/kubernetes Service the node holds.
func kubeProxyModes(ctx context.Context, n *Node) ([]string, error) {
	var modes []string
	for _, mode := range []string{"nftables", "iptables"} {
		rules, err := n.KubeProxyRules(ctx, mode)
		if err != nil {
			return nil, err
		}
		if strings.Contains(rules, "default/kubernetes") {
			modes = append(modes, mode)
		}
	}
	return modes, nil
}
