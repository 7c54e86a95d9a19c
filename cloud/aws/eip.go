package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func ipStatus(a ec2types.Address) *v1.LoadBalancerStatus {
	return &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: sdk.ToString(a.PublicIp)}}}
}

// checkEIPService returns an error a user can act on when eip mode cannot
// serve the Service.
func checkEIPService(svc *v1.Service) error {
	if len(svc.Spec.IPFamilies) > 0 && !slices.Contains(svc.Spec.IPFamilies, v1.IPv4Protocol) {
		return fmt.Errorf("eip mode gives IPv4 addresses only; this Service is IPv6-only: use nlb mode")
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			return fmt.Errorf("port %d has no NodePort (allocateLoadBalancerNodePorts is false); eip mode forwards to NodePorts", p.Port)
		}
	}
	return nil
}

// findEIPs returns the Elastic IPs tagged as the Service's in this cluster.
func (b *Backend) findEIPs(ctx context.Context, svc *v1.Service) ([]ec2types.Address, error) {
	out, err := b.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("tag:" + TagServiceUID), Values: []string{string(svc.UID)}},
		{Name: sdk.String("tag:" + TagCluster), Values: []string{b.cfg.ClusterName}},
	}})
	if err != nil {
		return nil, fmt.Errorf("find the Service's Elastic IP: %w", err)
	}
	return b.eipView(out.Addresses, func(a ec2types.Address) bool {
		t := fromEC2Tags(a.Tags)
		return t[TagServiceUID] == string(svc.UID) && t[TagCluster] == b.cfg.ClusterName
	}), nil
}

// acquireEIP takes a free Elastic IP from the configured list, or
// allocates one, tagged as the Service's in the same call.
func (b *Backend) acquireEIP(ctx context.Context, svc *v1.Service) (ec2types.Address, error) {
	tags := b.ownerTags(svc)
	if ids := b.cfg.EIP.AllocationIDs; len(ids) > 0 {
		out, err := b.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: ids})
		if err != nil {
			return ec2types.Address{}, fmt.Errorf("describe the configured Elastic IPs: %w", err)
		}
		listed := b.eipView(out.Addresses, func(a ec2types.Address) bool { return slices.Contains(ids, sdk.ToString(a.AllocationId)) })
		for _, a := range listed {
			if a.AssociationId != nil || fromEC2Tags(a.Tags)[TagServiceUID] != "" {
				continue
			}
			// Tags Berth acts on but did not write for this Service (left by
			// a failed return, or set by someone else) would make it release
			// the operator's address or unassign another interface's: they
			// go before the address is taken.
			if err := b.scrubTags(ctx, a); err != nil {
				return ec2types.Address{}, err
			}
			if _, err := b.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{sdk.ToString(a.AllocationId)}, Tags: ec2Tags(tags)}); err != nil {
				return ec2types.Address{}, fmt.Errorf("tag Elastic IP %s: %w", sdk.ToString(a.PublicIp), err)
			}
			a.Tags = ec2Tags(tags)
			b.noteEIP(a, true)
			b.log.Info("Took Elastic IP from the configured list", "service", config.Key(svc), "address", sdk.ToString(a.PublicIp))
			return a, nil
		}
		return ec2types.Address{}, fmt.Errorf("all %d Elastic IPs in aws.eip.allocationIDs are in use or associated elsewhere", len(ids))
	}
	tags[TagAllocated] = "true"
	in := &ec2.AllocateAddressInput{
		Domain:            ec2types.DomainTypeVpc,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp, Tags: ec2Tags(tags)}},
	}
	if pool := b.cfg.EIP.PublicIPv4Pool; pool != "" {
		in.PublicIpv4Pool = sdk.String(pool)
	}
	out, err := b.ec2.AllocateAddress(ctx, in)
	if err != nil {
		return ec2types.Address{}, fmt.Errorf("allocate an Elastic IP: %w", err)
	}
	b.log.Info("Allocated Elastic IP", "service", config.Key(svc), "address", sdk.ToString(out.PublicIp))
	a := ec2types.Address{AllocationId: out.AllocationId, PublicIp: out.PublicIp, Tags: ec2Tags(tags)}
	b.noteEIP(a, false)
	return a, nil
}

// scrubTags removes Berth's placement and allocation tags from an Elastic
// IP taken from the operator's list.
func (b *Backend) scrubTags(ctx context.Context, a ec2types.Address) error {
	var stray []ec2types.Tag
	for _, k := range []string{TagPrivateAddress, TagAllocated} {
		if _, ok := fromEC2Tags(a.Tags)[k]; ok {
			stray = append(stray, ec2types.Tag{Key: sdk.String(k)})
		}
	}
	if len(stray) == 0 {
		return nil
	}
	if _, err := b.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{sdk.ToString(a.AllocationId)}, Tags: stray}); err != nil {
		return fmt.Errorf("remove stray tags from Elastic IP %s: %w", sdk.ToString(a.PublicIp), err)
	}
	b.log.Info("Removed stray tags from an Elastic IP of the configured list", "address", sdk.ToString(a.PublicIp), "tags", len(stray))
	return nil
}

// ensureEIP gives the Service an Elastic IP mapped to a secondary private
// address on one eligible node, tells that node's speaker to forward it,
// and moves the mapping when the node stops being eligible.
func (b *Backend) ensureEIP(ctx context.Context, svc *v1.Service, given []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := checkEIPService(svc); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	addr, err := b.serviceEIP(ctx, svc)
	if err != nil {
		return nil, err
	}
	nodes := b.nodeList(given)
	cur, hadCur := parsePrivateAddress(fromEC2Tags(addr.Tags)[TagPrivateAddress])
	allow, err := b.localNodes(svc)
	if err != nil {
		return nil, err
	}
	ranked := rankNodes(string(svc.UID), cur.Node, nodes, allow)
	if len(ranked) == 0 && allow != nil && hadCur {
		// No node has a ready endpoint: traffic fails wherever the address
		// is, so it stays where it is rather than churn.
		b.log.Info("No eligible node has a ready endpoint; the Elastic IP stays", "service", config.Key(svc), "node", cur.Node)
		if ranked = rankNodes(string(svc.UID), cur.Node, nodes, nil); len(ranked) > 1 {
			ranked = ranked[:1]
		}
	}
	if len(ranked) == 0 {
		why := "Ready, schedulable, not excluded, with an aws:// providerID"
		if allow != nil {
			why += ", and for externalTrafficPolicy Local running a ready endpoint"
		}
		return nil, fmt.Errorf("the Elastic IP %s is allocated but no node can take it (%s)", sdk.ToString(addr.PublicIp), why)
	}
	var place privateAddress
	var passed []string
	exhausted := true
	for _, target := range ranked {
		// A node whose interface is full, or that cannot carry an Elastic
		// IP at all, passes the address to the next.
		place, err = b.placePrivate(ctx, addr, cur, target)
		var bad *unsuitableNodeError
		switch {
		case errors.As(err, &bad):
			b.log.Info("Node cannot carry an Elastic IP; trying the next node", "service", config.Key(svc), "node", target.Name, "reason", bad.Why)
			passed = append(passed, bad.Error())
			continue
		case apiCode(err) == "PrivateIpAddressLimitExceeded":
			b.log.Info("Node's interface holds no more addresses; trying the next node", "service", config.Key(svc), "node", target.Name)
			passed = append(passed, fmt.Sprintf("node %s: %v", target.Name, err))
			continue
		}
		exhausted = false
		break
	}
	if err != nil {
		// An error of a node that could carry the address (EC2 not
		// showing the new Elastic IP yet, say) is that error, not a
		// list of the nodes passed over before it.
		if exhausted && len(passed) > 0 {
			return nil, fmt.Errorf("the Elastic IP %s is allocated but no eligible node can carry it: %s",
				sdk.ToString(addr.PublicIp), strings.Join(passed, "; "))
		}
		return nil, err
	}
	if sdk.ToString(addr.NetworkInterfaceId) != place.ENI || sdk.ToString(addr.PrivateIpAddress) != place.Addr {
		assoc, err := b.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{
			AllocationId: addr.AllocationId, NetworkInterfaceId: sdk.String(place.ENI),
			PrivateIpAddress: sdk.String(place.Addr), AllowReassociation: sdk.Bool(true),
		})
		if err != nil {
			return nil, notYetVisible(fmt.Errorf("associate Elastic IP %s with %s on node %s: %w", sdk.ToString(addr.PublicIp), place.Addr, place.Node, err))
		}
		// What the Elastic IP pointed at before is given back below.
		now := addr
		now.Tags = withTag(addr.Tags, TagPrivateAddress, place.String())
		now.AssociationId, now.NetworkInterfaceId, now.PrivateIpAddress = assoc.AssociationId, sdk.String(place.ENI), sdk.String(place.Addr)
		b.noteEIP(now, false)
		b.log.Info("Mapped Elastic IP", "service", config.Key(svc), "address", sdk.ToString(addr.PublicIp), "node", place.Node, "private", place.Addr)
	}
	if err := b.forward(ctx, svc, place, nodes); err != nil {
		return nil, err
	}
	// Give back what the Elastic IP pointed at before: the recorded
	// placement, and the address it was associated with, which differ when
	// an earlier call failed between recording and associating.
	stale := map[privateAddress]bool{}
	if hadCur && cur != place {
		stale[cur] = true
	}
	if eni, ip := sdk.ToString(addr.NetworkInterfaceId), sdk.ToString(addr.PrivateIpAddress); eni != "" && (eni != place.ENI || ip != place.Addr) && (eni != cur.ENI || ip != cur.Addr) {
		stale[privateAddress{ENI: eni, Addr: ip}] = true
	}
	for p := range stale {
		if err := b.releasePrivate(ctx, p); err != nil {
			return nil, err
		}
	}
	return ipStatus(addr), nil
}

// localNodes returns, for externalTrafficPolicy Local, the nodes with a
// ready endpoint of the Service (kube-proxy drops the Service's NodePort
// traffic on the others); nil means every node will do.
func (b *Backend) localNodes(svc *v1.Service) (map[string]bool, error) {
	if svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal || b.endpoints == nil {
		return nil, nil
	}
	nodes, err := b.endpoints.NodesWithEndpoints(svc.Namespace, svc.Name)
	if err != nil {
		return nil, fmt.Errorf("read the Service's endpoints: %w", err)
	}
	if nodes == nil {
		nodes = map[string]bool{}
	}
	return nodes, nil
}

func (b *Backend) nodeList(given []*v1.Node) []*v1.Node {
	if b.nodes == nil {
		return given
	}
	nodes, err := b.nodes.Nodes()
	if err != nil {
		b.log.Error(err, "List nodes; using the service controller's")
		return given
	}
	return nodes
}

// placePrivate returns the secondary private address on the target node's
// primary interface that the Elastic IP maps to: the recorded one while it
// is still there, else a newly assigned one, recorded on the Elastic IP's
// tags before anything else happens so that a later call can find it.
func (b *Backend) placePrivate(ctx context.Context, addr ec2types.Address, cur privateAddress, target *v1.Node) (privateAddress, error) {
	id := instanceID(target)
	out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return privateAddress{}, fmt.Errorf("describe instance %s of node %s: %w", id, target.Name, err)
	}
	if !instanceTagged(out, id, clusterTagKey(b.cfg.ClusterName)) {
		return privateAddress{}, fmt.Errorf("node %s names instance %s, which is not tagged %s: not an instance of this cluster",
			target.Name, id, clusterTagKey(b.cfg.ClusterName))
	}
	eni, assigned := primaryInterface(out, id)
	if eni == "" {
		return privateAddress{}, fmt.Errorf("instance %s of node %s has no primary network interface", id, target.Name)
	}
	if cur.Node == target.Name && cur.ENI == eni && slices.Contains(assigned, cur.Addr) {
		return cur, nil
	}
	in, _ := instanceOf(out, id)
	if err := b.checkEIPNode(ctx, target.Name, in, eni, secondaryAddresses(in, eni)); err != nil {
		return privateAddress{}, err
	}
	got, err := b.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: sdk.String(eni), SecondaryPrivateIpAddressCount: sdk.Int32(1),
	})
	if err != nil {
		return privateAddress{}, fmt.Errorf("assign a secondary private address on %s (node %s): %w", eni, target.Name, err)
	}
	if len(got.AssignedPrivateIpAddresses) == 0 {
		return privateAddress{}, fmt.Errorf("assign a secondary private address on %s: none returned", eni)
	}
	place := privateAddress{Node: target.Name, ENI: eni, Addr: sdk.ToString(got.AssignedPrivateIpAddresses[0].PrivateIpAddress)}
	if _, err := b.ec2.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{sdk.ToString(addr.AllocationId)},
		Tags:      ec2Tags(map[string]string{TagPrivateAddress: place.String()}),
	}); err != nil {
		_, uerr := b.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: sdk.String(eni), PrivateIpAddresses: []string{place.Addr}})
		if uerr == nil {
			return privateAddress{}, notYetVisible(fmt.Errorf("record %s on Elastic IP %s: %w", place, sdk.ToString(addr.PublicIp), err))
		}
		return privateAddress{}, errors.Join(fmt.Errorf("record %s on Elastic IP %s: %w", place, sdk.ToString(addr.PublicIp), err), uerr)
	}
	recorded := addr
	recorded.Tags = withTag(addr.Tags, TagPrivateAddress, place.String())
	b.noteEIP(recorded, false)
	if b.placed == nil {
		b.placed = map[privateAddress]bool{}
	}
	b.placed[privateAddress{ENI: place.ENI, Addr: place.Addr}] = true
	return place, nil
}

// instanceTagged reports whether the instance carries the cluster tag as
// "owned" or "shared".
func instanceTagged(out *ec2.DescribeInstancesOutput, id, key string) bool {
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if v := fromEC2Tags(in.Tags)[key]; sdk.ToString(in.InstanceId) == id && (v == "owned" || v == "shared") {
				return true
			}
		}
	}
	return false
}

// secondaryAddresses returns the secondary private addresses of the
// instance's interface eni.
func secondaryAddresses(in ec2types.Instance, eni string) []string {
	var out []string
	for _, ni := range in.NetworkInterfaces {
		if sdk.ToString(ni.NetworkInterfaceId) != eni {
			continue
		}
		for _, p := range ni.PrivateIpAddresses {
			if !sdk.ToBool(p.Primary) {
				out = append(out, sdk.ToString(p.PrivateIpAddress))
			}
		}
	}
	return out
}

// primaryInterface returns the instance's device-0 interface and its
// addresses.
func primaryInterface(out *ec2.DescribeInstancesOutput, id string) (string, []string) {
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if sdk.ToString(in.InstanceId) != id {
				continue
			}
			for _, ni := range in.NetworkInterfaces {
				if ni.Attachment == nil || sdk.ToInt32(ni.Attachment.DeviceIndex) != 0 {
					continue
				}
				var addrs []string
				for _, p := range ni.PrivateIpAddresses {
					addrs = append(addrs, sdk.ToString(p.PrivateIpAddress))
				}
				return sdk.ToString(ni.NetworkInterfaceId), addrs
			}
		}
	}
	return "", nil
}

// forward annotates the chosen node so its speaker forwards the private
// address, and removes the Service's annotation from every other node.
func (b *Backend) forward(ctx context.Context, svc *v1.Service, place privateAddress, nodes []*v1.Node) error {
	if b.annotate == nil {
		return nil
	}
	key := v1alpha1.NodeAnnotationForwardPrefix + place.Addr
	onTarget, err := b.unforward(ctx, svc, nodes, place.Node, key)
	if err != nil || onTarget {
		return err
	}
	value := config.Key(svc)
	if err := b.annotate.Annotate(ctx, place.Node, key, &value); err != nil {
		return fmt.Errorf("tell node %s to forward %s: %w", place.Node, place.Addr, err)
	}
	return nil
}

// unforward removes the Service's forwarding annotations from the nodes,
// except key on node keepNode (none when keepNode is ""), and reports
// whether that one is there.
func (b *Backend) unforward(ctx context.Context, svc *v1.Service, nodes []*v1.Node, keepNode, key string) (kept bool, err error) {
	if b.annotate == nil {
		return false, nil
	}
	value := config.Key(svc)
	for _, n := range nodes {
		for k, v := range n.Annotations {
			if !strings.HasPrefix(k, v1alpha1.NodeAnnotationForwardPrefix) || v != value {
				continue
			}
			if n.Name == keepNode && k == key {
				kept = true
				continue
			}
			if err := b.annotate.Annotate(ctx, n.Name, k, nil); err != nil {
				return kept, fmt.Errorf("remove forwarding from node %s: %w", n.Name, err)
			}
		}
	}
	return kept, nil
}

// releasePrivate undoes one placement: the node's forwarding annotation
// and the secondary address. An interface or address that is gone already
// (the instance was terminated) is not an error.
func (b *Backend) releasePrivate(ctx context.Context, p privateAddress) error {
	if b.annotate != nil && p.Node != "" {
		if err := b.annotate.Annotate(ctx, p.Node, v1alpha1.NodeAnnotationForwardPrefix+p.Addr, nil); err != nil {
			return fmt.Errorf("remove forwarding of %s from node %s: %w", p.Addr, p.Node, err)
		}
	}
	_, err := b.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{
		NetworkInterfaceId: sdk.String(p.ENI), PrivateIpAddresses: []string{p.Addr},
	})
	switch apiCode(err) {
	case "", "InvalidNetworkInterfaceID.NotFound", "InvalidParameterValue":
		delete(b.placed, privateAddress{ENI: p.ENI, Addr: p.Addr})
		return nil
	}
	return fmt.Errorf("unassign %s from %s: %w", p.Addr, p.ENI, err)
}

// giveBack unmaps one of the Service's Elastic IPs and releases it if
// Berth allocated it, or removes Berth's tags from it (back to the list).
func (b *Backend) giveBack(ctx context.Context, svc *v1.Service, a ec2types.Address) error {
	id, tags := sdk.ToString(a.AllocationId), fromEC2Tags(a.Tags)
	if a.AssociationId != nil {
		if _, err := b.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: a.AssociationId}); err != nil && apiCode(err) != "InvalidAssociationID.NotFound" {
			return fmt.Errorf("disassociate Elastic IP %s: %w", sdk.ToString(a.PublicIp), err)
		}
		unmapped := a
		unmapped.AssociationId, unmapped.NetworkInterfaceId, unmapped.PrivateIpAddress = nil, nil, nil
		b.noteEIP(unmapped, false)
	}
	p, ok := parsePrivateAddress(tags[TagPrivateAddress])
	if ok {
		if err := b.releasePrivate(ctx, p); err != nil {
			return err
		}
	}
	// The association can differ from the record after a failed call.
	if eni, ip := sdk.ToString(a.NetworkInterfaceId), sdk.ToString(a.PrivateIpAddress); eni != "" && (eni != p.ENI || ip != p.Addr) {
		if err := b.releasePrivate(ctx, privateAddress{ENI: eni, Addr: ip}); err != nil {
			return err
		}
	}
	if tags[TagAllocated] == "true" {
		if _, err := b.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: a.AllocationId}); err != nil && apiCode(err) != "InvalidAllocationID.NotFound" {
			return fmt.Errorf("release Elastic IP %s: %w", sdk.ToString(a.PublicIp), err)
		}
		b.noteReleased(id)
		b.log.Info("Released Elastic IP", "service", config.Key(svc), "address", sdk.ToString(a.PublicIp))
		return nil
	}
	var keys []ec2types.Tag
	for k := range b.ownerTags(svc) {
		keys = append(keys, ec2types.Tag{Key: sdk.String(k)})
	}
	keys = append(keys, ec2types.Tag{Key: sdk.String(TagPrivateAddress)})
	if _, err := b.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: keys}); err != nil {
		return fmt.Errorf("return Elastic IP %s to the list: %w", sdk.ToString(a.PublicIp), err)
	}
	returned := a
	returned.AssociationId, returned.NetworkInterfaceId, returned.PrivateIpAddress = nil, nil, nil
	returned.Tags = withoutTags(a.Tags, keys)
	b.noteEIP(returned, false)
	b.log.Info("Returned Elastic IP to the configured list", "service", config.Key(svc), "address", sdk.ToString(a.PublicIp))
	return nil
}

// deleteEIP unmaps and gives back the Service's Elastic IPs: released if
// Berth allocated them, untagged (returned to the list) otherwise.
func (b *Backend) deleteEIP(ctx context.Context, svc *v1.Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs, err := b.findEIPs(ctx, svc)
	if err != nil {
		return err
	}
	if f, ok := b.fresh[svc.UID]; ok && time.Since(f.when) < freshFor &&
		!slices.ContainsFunc(addrs, func(a ec2types.Address) bool { return sdk.ToString(a.AllocationId) == f.id }) {
		// Released now, it would be leaked: wait until EC2 shows it.
		return api.NewRetryError(fmt.Sprintf("Elastic IP %s is allocated but EC2 does not show it yet", f.id), visibilityRetry)
	}
	for _, a := range addrs {
		if err := b.giveBack(ctx, svc, a); err != nil {
			return err
		}
	}
	delete(b.fresh, svc.UID)
	// Annotations a call that failed half-way left on other nodes.
	_, err = b.unforward(ctx, svc, b.nodeList(nil), "", "")
	return err
}
