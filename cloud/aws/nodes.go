package aws

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

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

// ipv6Targets reports whether the Service's primary family is IPv6: its
// NLB then forwards to IPv6 target groups of the nodes' IPv6 addresses.
func ipv6Targets(svc *v1.Service) bool {
	return len(svc.Spec.IPFamilies) > 0 && svc.Spec.IPFamilies[0] == v1.IPv6Protocol
}

// nodeIPv6 returns a node's IPv6 InternalIPs, canonical.
func nodeIPv6(n *v1.Node) []string {
	var out []string
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); a.Type == v1.NodeInternalIP && err == nil && ip.Is6() && !ip.Is4In6() {
			out = append(out, ip.String())
		}
	}
	return out
}

// targets returns the targets the Service's target groups should hold:
// the nodes that may be targets (and that the Service's
// target-node-labels select), whose providerID names a running instance
// of this cluster (tagged kubernetes.io/cluster/<clusterName>) in the
// load balancer's VPC. A Node naming any other instance (a typo, or a
// Node object made to pull someone else's instance into the NLB) is left
// out and logged. The targets are instance IDs, or with r.IPv6Targets the
// nodes' IPv6 InternalIPs that EC2 shows on their own instances (so a
// Node cannot point the NLB at another address of the VPC).
// It also returns the security groups of each target instance.
func (b *Backend) targets(ctx context.Context, nodes []*v1.Node, r request, vpc string) ([]string, map[string][]string, error) {
	keep := func(n *v1.Node) bool {
		return targetNode(n) && (r.TargetNodes == nil || r.TargetNodes.Matches(labels.Set(n.Labels)))
	}
	want := instances(nodes, keep)
	if len(want) == 0 {
		return nil, nil, nil
	}
	found, err := b.clusterInstances(ctx, want, vpc)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	groupsOf := map[string][]string{}
	for _, id := range want {
		if in, ok := found[id]; ok {
			groupsOf[id] = in.groups
			if !r.IPv6Targets {
				out = append(out, id)
			}
		} else {
			b.log.Info("Node's instance is not a running instance of this cluster in the load balancer's VPC; not a target",
				"instance", id, "clusterTag", clusterTagKey(b.cfg.ClusterName), "vpc", vpc)
		}
	}
	if r.IPv6Targets {
		out = b.ipv6Targets(nodes, keep, found)
	}
	return out, groupsOf, nil
}

// ipv6Targets returns the IPv6 InternalIPs of the kept nodes that EC2
// shows on the node's own instance, sorted and distinct, and logs the
// nodes that have none.
func (b *Backend) ipv6Targets(nodes []*v1.Node, keep func(*v1.Node) bool, found map[string]instanceInfo) []string {
	var out []string
	for _, n := range nodes {
		in, ok := found[instanceID(n)]
		if !keep(n) || !ok {
			continue
		}
		ips := slices.DeleteFunc(nodeIPv6(n), func(ip string) bool { return !slices.Contains(in.ipv6, ip) })
		if len(ips) == 0 {
			b.log.Info("Node has no IPv6 InternalIP of its instance; not a target of the Service's IPv6 target groups",
				"node", n.Name, "instance", instanceID(n), "instanceIPv6", in.ipv6)
		}
		out = append(out, ips...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// instanceInfo is what the backend needs of a target instance.
type instanceInfo struct {
	groups []string // its security groups
	ipv6   []string // the IPv6 addresses of its network interfaces, canonical
}

// clusterInstances returns the instances among ids that are running,
// tagged as this cluster's and in the VPC (any VPC when vpc is ""). It
// filters by instance ID rather than naming the IDs, so one unknown ID
// does not fail the whole call, and reads every page.
func (b *Backend) clusterInstances(ctx context.Context, ids []string, vpc string) (map[string]instanceInfo, error) {
	ok := map[string]instanceInfo{}
	for chunk := range slices.Chunk(ids, 200) {
		filters := []ec2types.Filter{
			{Name: sdk.String("instance-id"), Values: chunk},
			{Name: sdk.String("tag-key"), Values: []string{clusterTagKey(b.cfg.ClusterName)}},
			{Name: sdk.String("instance-state-name"), Values: []string{"running"}},
		}
		if vpc != "" {
			filters = append(filters, ec2types.Filter{Name: sdk.String("vpc-id"), Values: []string{vpc}})
		}
		p := ec2.NewDescribeInstancesPaginator(b.ec2, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: sdk.Int32(1000)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("check the nodes' instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					if v := fromEC2Tags(in.Tags)[clusterTagKey(b.cfg.ClusterName)]; v == "owned" || v == "shared" {
						ok[sdk.ToString(in.InstanceId)] = infoOf(in)
					}
				}
			}
		}
	}
	return ok, nil
}

func infoOf(in ec2types.Instance) instanceInfo {
	var info instanceInfo
	for _, g := range in.SecurityGroups {
		info.groups = append(info.groups, sdk.ToString(g.GroupId))
	}
	for _, eni := range in.NetworkInterfaces {
		for _, a := range eni.Ipv6Addresses {
			if ip, err := netip.ParseAddr(sdk.ToString(a.Ipv6Address)); err == nil {
				info.ipv6 = append(info.ipv6, ip.String())
			}
		}
	}
	return info
}

// clusterTagKey is the upstream tag that marks a cluster's resources.
func clusterTagKey(cluster string) string { return "kubernetes.io/cluster/" + cluster }
