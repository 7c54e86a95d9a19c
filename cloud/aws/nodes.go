package aws

import (
	"hash/fnv"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// instanceID returns the EC2 instance ID in a node's providerID
// (aws:///eu-west-1a/i-0123 or aws:///i-0123), or "".
func instanceID(n *v1.Node) string {
	id := n.Spec.ProviderID
	if !strings.HasPrefix(id, "aws://") {
		return ""
	}
	last := id[strings.LastIndex(id, "/")+1:]
	if !strings.HasPrefix(last, "i-") {
		return ""
	}
	return last
}

// targetNode is a node an NLB may send traffic to: it has an instance and
// is not excluded. Readiness is left to the NLB's health checks, as the
// service controller does for externalTrafficPolicy Cluster.
func targetNode(n *v1.Node) bool {
	return instanceID(n) != "" && !config.Excluded(n.Labels) && n.DeletionTimestamp == nil
}

// eipNode is a node an Elastic IP may be mapped to: a target that is also
// Ready and schedulable, since only one node carries the traffic.
func eipNode(n *v1.Node) bool {
	if !targetNode(n) || n.Spec.Unschedulable {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// instances returns the sorted, distinct instance IDs of the nodes that
// pass keep.
func instances(nodes []*v1.Node, keep func(*v1.Node) bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range nodes {
		if id := instanceID(n); keep(n) && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// rankNodes orders the eligible nodes that allow passes (nil allows all)
// for a Service's Elastic IP: the current one first while it stays so (an
// Elastic IP never moves without cause), then by rendezvous score of
// Service UID and node name, so choices spread over nodes and do not
// depend on the order nodes are listed in.
func rankNodes(uid, current string, nodes []*v1.Node, allow map[string]bool) []*v1.Node {
	type scored struct {
		n     *v1.Node
		score uint64
	}
	var out []scored
	for _, n := range nodes {
		if !eipNode(n) || (allow != nil && !allow[n.Name]) {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(uid + "/" + n.Name))
		out = append(out, scored{n, h.Sum64()})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.n.Name == current) != (b.n.Name == current) {
			return a.n.Name == current
		}
		if a.score != b.score {
			return a.score > b.score
		}
		return a.n.Name < b.n.Name
	})
	ranked := make([]*v1.Node, len(out))
	for i, s := range out {
		ranked[i] = s.n
	}
	return ranked
}
