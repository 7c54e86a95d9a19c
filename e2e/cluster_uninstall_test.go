package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	helmkube "helm.sh/helm/v4/pkg/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/frr"
)

// berthPartOf selects the chart's objects (every one carries the label).
const berthPartOf = "app.kubernetes.io/part-of=berth"

// testClusterUninstall is scenario 5: `helm uninstall` (its pre-delete
// hook, the Job running `berth-controller uninstall`, included) while
// Services hold addresses from the BGP and layer-2 pools. Afterwards no
// Berth object is left in the namespace or the cluster (but the Namespace
// and the CRDs with their objects, kept on purpose, see docs/install.md),
// no BerthIPPool keeps a finalizer, and on every node there is no nftables
// table inet berth, no drain route (proto 190), no pool address, and no
// Berth process runs anywhere; the router has withdrawn the BGP address
// and the client gets no answer. The Services keep their ingress
// (documented: nothing clears it once Berth is gone), so that a reinstall
// gives them back the same addresses (testClusterReinstall).
func testClusterUninstall(t *testing.T, c *cluster.Cluster, e *env, b *clusterBGPLab) {
	ctx := t.Context()
	bgpAddr := serviceAddrs(t, e, "bgp", "echo")[0]
	pools := []string{"bgp", "l2"}
	var poolAddrs []netip.Addr
	for _, key := range [][2]string{{"bgp", "echo"}, {"upgrade", "echo"}} {
		if s, err := e.kube.CoreV1().Services(key[0]).Get(ctx, key[1], metav1.GetOptions{}); err == nil {
			poolAddrs = append(poolAddrs, addrs(s)...)
		}
	}
	// The chart forwards by default: before, every node has the table,
	// so that its absence afterwards means something.
	for _, n := range c.Nodes {
		if !nodeHasBerthTable(t, n) {
			t.Fatalf("%s has no table inet berth before the uninstall", n.Name)
		}
	}

	if procs := berthProcesses(c); len(procs) < 2+len(c.Nodes) {
		t.Fatalf("before the uninstall, Berth processes on the nodes: %v; want 2 controllers and a speaker per node", procs)
	}

	began := time.Now()
	uninstall := action.NewUninstall(clusterHelm(t, c))
	uninstall.WaitStrategy, uninstall.Timeout = helmkube.StatusWatcherStrategy, 2*time.Minute
	if _, err := uninstall.Run("berth"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	returned := time.Since(began)
	var gone time.Duration
	poll(t, time.Minute, "no Berth pod and no Berth process", func() error {
		list, err := c.Kube.CoreV1().Pods(berthNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left, first %s", len(list.Items), list.Items[0].Name)
		}
		if procs := berthProcesses(c); len(procs) > 0 {
			return fmt.Errorf("Berth processes still run: %v", procs)
		}
		gone = time.Since(began)
		return nil
	})
	t.Logf("MEASURED: helm uninstall returned after %v (pre-delete hook included); no Berth pod or process left after %v", returned.Round(time.Millisecond), gone.Round(time.Millisecond))

	for _, left := range berthObjectsLeft(ctx, e) {
		t.Error(left)
	}
	for _, name := range pools {
		p, err := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pool %s (kept with the CRDs): %v", name, err)
		} else if len(p.Finalizers) > 0 {
			t.Errorf("pool %s keeps finalizers %v", name, p.Finalizers)
		}
	}
	for _, n := range c.Nodes {
		if nodeHasBerthTable(t, n) {
			t.Errorf("%s: table inet berth remains", n.Name)
		}
		if out, _ := n.Host.Exec(ctx, "ip", "route", "show", "proto", "190"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: drain routes remain: %q", n.Name, out)
		}
		out, _ := n.Host.Exec(ctx, "ip", "-o", "addr", "show")
		for _, a := range poolAddrs {
			if strings.Contains(out, " "+a.String()+"/") {
				t.Errorf("%s still holds %s:\n%s", n.Name, a, out)
			}
		}
	}
	if hops := frr.KernelNextHops(t, b.router.Host, hostRoute(bgpAddr)); len(hops) > 0 {
		t.Errorf("the router still routes %s via %v", bgpAddr, hops)
	}
	hc := httpFrom(b.client)
	hc.Timeout = time.Second
	if a, err := ask(ctx, hc, fmt.Sprintf("http://%s/", bgpAddr)); err == nil {
		route, _ := b.client.Exec(ctx, "ip", "route", "get", bgpAddr.String())
		t.Errorf("%s still answers after the uninstall: %+v; the client's route: %s", bgpAddr, a, route)
	}
	if got := serviceAddrs(t, e, "bgp", "echo"); !slices.Equal(got, []netip.Addr{bgpAddr}) {
		t.Errorf("service bgp/echo: ingress %v after the uninstall, want it kept (%s)", got, bgpAddr)
	}
}

// testClusterReinstall installs the chart again after the uninstall, as
// testClusterHelmInstall does, and the BGP Service answers again at the
// address it kept.
func testClusterReinstall(t *testing.T, c *cluster.Cluster, e *env, b *clusterBGPLab) {
	bgpAddr := serviceAddrs(t, e, "bgp", "echo")[0]
	began := time.Now()
	testClusterHelmInstall(t, c)
	waitNextHops(t, b.router.Host, hostRoute(bgpAddr), b.nodeIPs, settle)
	firstAnswer(t, b.client, fmt.Sprintf("http://%s/", bgpAddr), settle)
	t.Logf("MEASURED: reinstall to the first answer through %s (the address the Service kept): %v", bgpAddr, time.Since(began).Round(time.Millisecond))
	if got := serviceAddrs(t, e, "bgp", "echo"); !slices.Equal(got, []netip.Addr{bgpAddr}) {
		t.Errorf("service bgp/echo: ingress %v after the reinstall, want %s", got, bgpAddr)
	}
}

// nodeHasBerthTable reports whether the node has the speaker's nftables
// table.
func nodeHasBerthTable(t *testing.T, n *cluster.Node) bool {
	t.Helper()
	out, err := n.Host.Exec(t.Context(), "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Split(strings.TrimSpace(out), "\n"), "table inet berth")
}

// berthObjectsLeft names the chart's objects that still exist: any object
// in Berth's namespace but its default ServiceAccount and root CA
// ConfigMap, and the chart's cluster-wide RBAC and webhooks.
func berthObjectsLeft(ctx context.Context, e *env) []string {
	ns, all, mine := berthNamespace, metav1.ListOptions{}, metav1.ListOptions{LabelSelector: berthPartOf}
	core, apps, rbac := e.kube.CoreV1(), e.kube.AppsV1(), e.kube.RbacV1()
	lists := []struct {
		kind, keep string // keep: the one name that may stay
		list       func() (runtime.Object, error)
	}{
		{"Deployment", "", func() (runtime.Object, error) { return apps.Deployments(ns).List(ctx, all) }},
		{"DaemonSet", "", func() (runtime.Object, error) { return apps.DaemonSets(ns).List(ctx, all) }},
		{"Job", "", func() (runtime.Object, error) { return e.kube.BatchV1().Jobs(ns).List(ctx, all) }},
		{"ConfigMap", "kube-root-ca.crt", func() (runtime.Object, error) { return core.ConfigMaps(ns).List(ctx, all) }},
		{"Secret", "", func() (runtime.Object, error) { return core.Secrets(ns).List(ctx, all) }},
		{"ServiceAccount", "default", func() (runtime.Object, error) { return core.ServiceAccounts(ns).List(ctx, all) }},
		{"Service", "", func() (runtime.Object, error) { return core.Services(ns).List(ctx, all) }},
		{"ClusterRole", "", func() (runtime.Object, error) { return rbac.ClusterRoles().List(ctx, mine) }},
		{"ClusterRoleBinding", "", func() (runtime.Object, error) { return rbac.ClusterRoleBindings().List(ctx, mine) }},
		{"ValidatingWebhookConfiguration", "", func() (runtime.Object, error) {
			return e.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, mine)
		}},
	}
	var left []string
	for _, l := range lists {
		obj, err := l.list()
		if err == nil {
			err = meta.EachListItem(obj, func(o runtime.Object) error {
				m, err := meta.Accessor(o)
				if err == nil && m.GetName() != l.keep {
					left = append(left, fmt.Sprintf("%s %s is left after the uninstall", l.kind, m.GetName()))
				}
				return err
			})
		}
		if err != nil {
			left = append(left, fmt.Sprintf("list %s: %v", l.kind, err))
		}
	}
	return left
}

// berthProcesses returns the Berth processes running on the cluster's
// nodes, as "node pid:command".
func berthProcesses(c *cluster.Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		for _, p := range n.Processes() {
			// The command is cut at 15 bytes: berth-controlle.
			if _, comm, _ := strings.Cut(p, ":"); strings.HasPrefix(comm, "berth-") {
				out = append(out, n.Name+" "+p)
			}
		}
	}
	return out
}
