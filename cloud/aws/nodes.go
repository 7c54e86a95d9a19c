package aws

import (
	"context"
	"fmt"
	"hash/fnv"
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

// targets returns the instance IDs the Service's target groups should
// hold: the nodes that may be targets (and that the Service's
// target-node-labels select), whose providerID names a running instance
// of this cluster (tagged kubernetes.io/cluster/<clusterName>) in the
// load balancer's VPC. A Node naming any other instance (a typo, or a
// Node object made to pull someone else's instance into the NLB) is left
// out and logged.
// It also returns the security groups of each target instance.
func (b *Backend) targets(ctx context.Context, nodes []*v1.Node, r request, vpc string) ([]string, map[string][]string, error) {
	want := instances(nodes, func(n *v1.Node) bool {
		return targetNode(n) && (r.TargetNodes == nil || r.TargetNodes.Matches(labels.Set(n.Labels)))
	})
	if len(want) == 0 {
		return nil, nil, nil
	}
	ok, err := b.clusterInstances(ctx, want, vpc)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, id := range want {
		if _, found := ok[id]; found {
			out = append(out, id)
		} else {
			b.log.Info("Node's instance is not a running instance of this cluster in the load balancer's VPC; not a target",
				"instance", id, "clusterTag", clusterTagKey(b.cfg.ClusterName), "vpc", vpc)
		}
	}
	return out, ok, nil
}

// clusterInstances returns, with their security groups, the instances
// among ids that are running, tagged as this cluster's and in the VPC (any
// VPC when vpc is ""). It filters by instance ID rather than naming the
// IDs, so one unknown ID does not fail the whole call, and reads every
// page.
func (b *Backend) clusterInstances(ctx context.Context, ids []string, vpc string) (map[string][]string, error) {
	ok := map[string][]string{}
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
						var groups []string
						for _, g := range in.SecurityGroups {
							groups = append(groups, sdk.ToString(g.GroupId))
						}
						ok[sdk.ToString(in.InstanceId)] = groups
					}
				}
			}
		}
	}
	return ok, nil
}

// clusterTagKey is the upstream tag that marks a cluster's resources.
func clusterTagKey(cluster string) string { return "kubernetes.io/cluster/" + cluster }
