package aws

import (
	"fmt"
	"slices"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// Tags on every AWS resource Berth creates or takes.
const (
	// TagCluster holds the cloud config's clusterName.
	TagCluster = "berth.dev/cluster"
	// TagServiceUID holds the UID of the Service the resource serves; with
	// TagCluster it is the proof of ownership.
	TagServiceUID = "berth.dev/service-uid"
	// TagService holds namespace/name, for people reading the console.
	TagService = "berth.dev/service"
	// TagAllocated is "true" on Elastic IPs Berth allocated (and so
	// releases); Elastic IPs taken from the operator's list lack it.
	TagAllocated = "berth.dev/allocated"
	// TagPrivateAddress records, on an Elastic IP, the secondary private
	// address Berth assigned for it: "<node>/<eni>/<address>".
	TagPrivateAddress = "berth.dev/private-address"
)

// TagUpstreamServiceName is the upstream AWS provider's tag naming the
// Service (namespace/name) a load balancer or target group serves; Berth
// writes it too, so tooling and cost reports built on it keep working.
const TagUpstreamServiceName = "kubernetes.io/service-name"

// ownerTags are the tags that mark a resource as this cluster's, serving
// this Service: Berth's and the upstream provider's.
func (b *Backend) ownerTags(svc *v1.Service) map[string]string {
	return map[string]string{
		TagCluster:                       b.cfg.ClusterName,
		TagServiceUID:                    string(svc.UID),
		TagService:                       config.Key(svc),
		clusterTagKey(b.cfg.ClusterName): "owned",
		TagUpstreamServiceName:           config.Key(svc),
	}
}

// owns reports whether tags prove the resource serves svc in this cluster.
func (b *Backend) owns(tags map[string]string, svc *v1.Service) bool {
	return tags[TagCluster] == b.cfg.ClusterName && tags[TagServiceUID] == string(svc.UID)
}

// upstreamOwns reports whether tags are those the upstream AWS provider
// puts on the resources it makes for svc in this cluster, and none of
// Berth's: such a resource may be adopted. The Service's UID is not in
// them, so this only decides for resources already tied to the UID (the
// NLB by its name, "a" and the UID; target groups by being attached to
// that NLB).
func (b *Backend) upstreamOwns(tags map[string]string, svc *v1.Service) bool {
	_, berth := tags[TagServiceUID]
	return !berth && tags[clusterTagKey(b.cfg.ClusterName)] == "owned" && tags[TagUpstreamServiceName] == config.Key(svc)
}

func elbTags(m map[string]string) []elbtypes.Tag {
	out := make([]elbtypes.Tag, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, elbtypes.Tag{Key: sdk.String(k), Value: sdk.String(m[k])})
	}
	return out
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, ec2types.Tag{Key: sdk.String(k), Value: sdk.String(m[k])})
	}
	return out
}

func fromELBTags(tags []elbtypes.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[sdk.ToString(t.Key)] = sdk.ToString(t.Value)
	}
	return m
}

func fromEC2Tags(tags []ec2types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[sdk.ToString(t.Key)] = sdk.ToString(t.Value)
	}
	return m
}

// privateAddress is the value of TagPrivateAddress.
type privateAddress struct {
	Node, ENI, Addr string
}

func (p privateAddress) String() string { return p.Node + "/" + p.ENI + "/" + p.Addr }

func parsePrivateAddress(s string) (privateAddress, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return privateAddress{}, false
	}
	return privateAddress{Node: parts[0], ENI: parts[1], Addr: parts[2]}, true
}

// ConflictError reports a resource that has Berth's name but not its
// tags: Berth leaves it alone and says so.
type ConflictError struct {
	Kind, Name string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("a %s named %s exists but is not tagged as this Service's (tags %s and %s); Berth will not touch it: rename or delete it",
		e.Kind, e.Name, TagCluster, TagServiceUID)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
