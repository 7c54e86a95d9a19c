package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/netlab"
)

// refusals counts, in a client's network namespace, the TCP resets and
// ICMP destination-unreachable messages that reach it from each node, so
// that a refused request names the node that refused it. The nodes answer
// the client directly (it is on their segment), whatever way the request
// went in.
type refusals struct {
	client *netlab.Host
	table  string
}

// countRefusals installs the counters in client's namespace; they are
// removed when t ends.
func countRefusals(t *testing.T, c *cluster.Cluster, client *netlab.Host) *refusals {
	t.Helper()
	r := &refusals{client: client, table: "berth_refusals"}
	var rules strings.Builder
	fmt.Fprintf(&rules, "table inet %s {\n chain in {\n  type filter hook input priority -300;\n", r.table)
	for _, n := range c.Nodes {
		mac, err := n.Host.Exec(t.Context(), "cat", "/sys/class/net/eth0/address")
		if err != nil {
			t.Fatal(err)
		}
		mac = strings.TrimSpace(mac)
		fmt.Fprintf(&rules, "  ether saddr %s tcp flags & rst == rst counter comment \"%s tcp-reset\"\n", mac, n.Name)
		fmt.Fprintf(&rules, "  ether saddr %s icmp type destination-unreachable counter comment \"%s icmp-unreachable\"\n", mac, n.Name)
	}
	rules.WriteString("  tcp flags & rst == rst counter comment \"other tcp-reset\"\n }\n}\n")
	cmd := client.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("refusal counters: %v\n%s\n%s", err, out, rules.String())
	}
	t.Cleanup(func() {
		// t's context has ended by now.
		_, _ = client.Exec(context.Background(), "nft", "delete", "table", "inet", r.table)
	})
	return r
}

var refusalCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "([^"]+)"`)

// String lists the non-zero counters, "node1 tcp-reset: 1", or "none".
func (r *refusals) String() string {
	out, err := r.client.Exec(context.Background(), "nft", "list", "table", "inet", r.table)
	if err != nil {
		return err.Error()
	}
	var seen []string
	for _, m := range refusalCounter.FindAllStringSubmatch(out, -1) {
		if m[1] != "0" {
			seen = append(seen, m[2]+": "+m[1])
		}
	}
	if len(seen) == 0 {
		return "none"
	}
	return strings.Join(seen, ", ")
}

// endpointLog records each change of a Service's EndpointSlices, with its
// time since began, until t ends: a refused request can then be set
// against what the nodes' kube-proxies were told at that moment.
type endpointLog struct {
	mu      sync.Mutex
	began   time.Time
	changes []string
}

// logEndpoints starts recording the EndpointSlices of Service ns/name.
func logEndpoints(t *testing.T, c *cluster.Cluster, ns, name string) *endpointLog {
	t.Helper()
	l := &endpointLog{began: time.Now()}
	w, err := c.Kube.DiscoveryV1().EndpointSlices(ns).Watch(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			var eps []string
			for _, ep := range s.Endpoints {
				state := ""
				for _, f := range []struct {
					name string
					v    *bool
				}{{"ready", ep.Conditions.Ready}, {"serving", ep.Conditions.Serving}, {"terminating", ep.Conditions.Terminating}} {
					if ptr.Deref(f.v, false) {
						state += " " + f.name
					}
				}
				pod := ""
				if ep.TargetRef != nil {
					pod = ep.TargetRef.Name
				}
				eps = append(eps, fmt.Sprintf("%s@%s:%s", pod, ptr.Deref(ep.NodeName, ""), state))
			}
			slices.Sort(eps)
			l.mu.Lock()
			l.changes = append(l.changes, fmt.Sprintf("%v %s %v", time.Since(l.began).Round(time.Millisecond), ev.Type, eps))
			l.mu.Unlock()
		}
	}()
	return l
}

// String lists the changes seen so far, one per line.
func (l *endpointLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.changes, "\n")
}

// waitEndpointsReady waits until Service ns/name's EndpointSlices list n
// endpoints, every one Ready: no terminating pod is left that a node's
// kube-proxy could still send to.
func waitEndpointsReady(t *testing.T, c *cluster.Cluster, ns, name string, n int) {
	t.Helper()
	poll(t, 30*time.Second, fmt.Sprintf("%d Ready endpoints of %s/%s and no other", n, ns, name), func() error {
		list, err := c.Kube.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return err
		}
		ready, all := 0, 0
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				all++
				if ptr.Deref(ep.Conditions.Ready, true) && !ptr.Deref(ep.Conditions.Terminating, false) {
					ready++
				}
			}
		}
		if ready != n || all != n {
			return fmt.Errorf("%d endpoints, %d Ready", all, ready)
		}
		return nil
	})
}
