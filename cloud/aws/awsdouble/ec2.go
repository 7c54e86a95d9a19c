package awsdouble

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// defaultPublicPool is where AllocateAddress takes addresses from when no
// PublicIpv4Pool is named (TEST-NET-3, RFC 5737).
const defaultPublicPool = "203.0.113.0/24"

func (s *Server) ec2Handler(action string) handler {
	return map[string]handler{
		"DescribeSubnets": s.describeSubnets, "DescribeInstances": s.describeInstances,
		"DescribeNetworkInterfaces": s.describeNetworkInterfaces, "AssignPrivateIpAddresses": s.assignPrivateIPs,
		"UnassignPrivateIpAddresses": s.unassignPrivateIPs, "AllocateAddress": s.allocateAddress,
		"DescribeAddresses": s.describeAddresses, "AssociateAddress": s.associateAddress,
		"DisassociateAddress": s.disassociateAddress, "ReleaseAddress": s.releaseAddress,
		"CreateTags": s.createTags, "DeleteTags": s.deleteTags,
		"CreateSecurityGroup": s.createSecurityGroup, "DescribeSecurityGroups": s.describeSecurityGroups,
		"AuthorizeSecurityGroupIngress": s.authorizeIngress, "RevokeSecurityGroupIngress": s.revokeIngress,
		"DeleteSecurityGroup": s.deleteSecurityGroup, "DescribeRouteTables": s.describeRouteTables,
		"DescribeAvailabilityZones": s.describeAvailabilityZones,
	}[action]
}

// specTags reads TagSpecification.N for the one resource type the
// operation creates.
func (s *Server) specTags(p params, resourceType string) (map[string]string, error) {
	tags := map[string]string{}
	for _, spec := range p.structs("TagSpecification", "ResourceType") {
		if rt := p.str(spec + "ResourceType"); rt != resourceType {
			return nil, fail("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation", rt)
		}
		t, err := p.tags(spec + "Tag")
		if err != nil {
			return nil, err
		}
		maps.Copy(tags, t)
	}
	return tags, nil
}

// returnTrue is the body of EC2 responses that only report success.
func returnTrue() []*node { return []*node{tx("return", "true")} }

func (s *Server) describeSubnets(p params) ([]*node, error) {
	fs, err := p.filters("vpc-id", "availability-zone", "subnet-id", "cidr-block")
	if err != nil {
		return nil, err
	}
	subnets, err := pick(s.subnets, p.list("SubnetId"), "InvalidSubnetID.NotFound", "subnet ID")
	if err != nil {
		return nil, err
	}
	set := el("subnetSet")
	for _, sn := range subnets {
		if matches(fs, sn.Tags, map[string][]string{"vpc-id": {sn.VPCID}, "availability-zone": {sn.AvailabilityZone},
			"subnet-id": {sn.ID}, "cidr-block": {sn.CIDR}}) {
			set.kids = append(set.kids, el("item", tx("subnetId", sn.ID), tx("vpcId", sn.VPCID),
				tx("availabilityZone", sn.AvailabilityZone), tx("cidrBlock", sn.CIDR), tx("state", "available"),
				tx("ownerId", AccountID), tagList(sn.Tags, true), ipv6Associations(sn)))
		}
	}
	return []*node{set}, nil
}

func (s *Server) describeInstances(p params) ([]*node, error) {
	fs, err := p.filters("instance-state-name", "instance-id", "subnet-id", "vpc-id", "private-ip-address")
	if err != nil {
		return nil, err
	}
	instances, err := pick(s.instances, p.list("InstanceId"), "InvalidInstanceID.NotFound", "instance ID")
	if err != nil {
		return nil, err
	}
	instances = slices.DeleteFunc(instances, func(inst *Instance) bool {
		eni, sn := s.enis[inst.NetworkInterfaceID], s.subnets[inst.SubnetID]
		return !matches(fs, inst.Tags, map[string][]string{"instance-state-name": {inst.State}, "instance-id": {inst.ID},
			"subnet-id": {sn.ID}, "vpc-id": {sn.VPCID}, "private-ip-address": {eni.PrivateIPs[0]}})
	})
	start, end, next, err := p.paginate(len(instances), len(p.list("InstanceId")) > 0, 5, 1000)
	if err != nil {
		return nil, err
	}
	set := el("reservationSet")
	for _, inst := range instances[start:end] {
		eni, sn := s.enis[inst.NetworkInterfaceID], s.subnets[inst.SubnetID]
		code, _ := instanceStateCode(inst.State)
		var publicIP string
		if a := s.associated(eni.ID, eni.PrivateIPs[0]); a != nil {
			publicIP = a.PublicIP
		}
		item := el("item", tx("instanceId", inst.ID), opt("instanceType", inst.Type), tx("privateIpAddress", eni.PrivateIPs[0]),
			opt("ipAddress", publicIP), tx("subnetId", sn.ID), tx("vpcId", sn.VPCID),
			el("placement", tx("availabilityZone", sn.AvailabilityZone)),
			el("instanceState", tx("code", itoa(code)), tx("name", inst.State)),
			tagList(inst.Tags, true), s.groupSet(inst.SecurityGroups), el("networkInterfaceSet", s.eniItem(eni)))
		set.kids = append(set.kids, el("item", tx("reservationId", "r-"+strings.TrimPrefix(inst.ID, "i-")),
			tx("ownerId", AccountID), el("instancesSet", item)))
	}
	return []*node{set, opt("nextToken", next)}, nil
}

func (s *Server) describeNetworkInterfaces(p params) ([]*node, error) {
	fs, err := p.filters("network-interface-id", "attachment.instance-id", "subnet-id", "vpc-id",
		"addresses.private-ip-address")
	if err != nil {
		return nil, err
	}
	enis, err := pick(s.enis, p.list("NetworkInterfaceId"), "InvalidNetworkInterfaceID.NotFound",
		"network interface ID")
	if err != nil {
		return nil, err
	}
	set := el("networkInterfaceSet")
	for _, eni := range enis {
		if matches(fs, nil, map[string][]string{"network-interface-id": {eni.ID},
			"attachment.instance-id": {eni.InstanceID}, "subnet-id": {eni.SubnetID},
			"vpc-id": {s.subnets[eni.SubnetID].VPCID}, "addresses.private-ip-address": eni.PrivateIPs}) {
			set.kids = append(set.kids, s.eniItem(eni))
		}
	}
	return []*node{set}, nil
}

// eniItem is a network interface as DescribeNetworkInterfaces and, inside an
// instance, DescribeInstances return it.
func (s *Server) eniItem(eni *NetworkInterface) *node {
	sn := s.subnets[eni.SubnetID]
	ips := el("privateIpAddressesSet")
	for i, ip := range eni.PrivateIPs {
		ips.kids = append(ips.kids, el("item", tx("privateIpAddress", ip), tx("primary", strconv.FormatBool(i == 0)),
			s.associationNode(eni.ID, ip)))
	}
	v6 := el("ipv6AddressesSet")
	for i, ip := range eni.IPv6 {
		v6.kids = append(v6.kids, el("item", tx("ipv6Address", ip), tx("isPrimaryIpv6", strconv.FormatBool(i == 0 && eni.PrimaryIPv6))))
	}
	return el("item", tx("networkInterfaceId", eni.ID), tx("subnetId", sn.ID), tx("vpcId", sn.VPCID),
		tx("availabilityZone", sn.AvailabilityZone), tx("ownerId", AccountID), tx("status", "in-use"),
		tx("interfaceType", "interface"), tx("privateIpAddress", eni.PrivateIPs[0]),
		s.associationNode(eni.ID, eni.PrivateIPs[0]),
		el("attachment", tx("attachmentId", eni.AttachmentID), tx("instanceId", eni.InstanceID),
			tx("instanceOwnerId", AccountID), tx("deviceIndex", "0"), tx("status", "attached")),
		ips, v6, el("tagSet"))
}

func (s *Server) associationNode(eniID, ip string) *node {
	a := s.associated(eniID, ip)
	if a == nil {
		return nil
	}
	return el("association", tx("publicIp", a.PublicIP), tx("allocationId", a.AllocationID),
		tx("associationId", a.AssociationID), tx("ipOwnerId", AccountID))
}

// associated is the Elastic IP associated with a private address, or nil.
func (s *Server) associated(eniID, ip string) *Address {
	for _, a := range s.addresses {
		if a.AssociationID != "" && a.NetworkInterfaceID == eniID && a.PrivateIP == ip {
			return a
		}
	}
	return nil
}

func (s *Server) eni(id string) (*NetworkInterface, error) {
	eni, ok := s.enis[id]
	if !ok {
		return nil, fail("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", id)
	}
	return eni, nil
}

func (s *Server) assignPrivateIPs(p params) ([]*node, error) {
	eni, err := s.eni(p.str("NetworkInterfaceId"))
	if err != nil {
		return nil, err
	}
	explicit, count := p.list("PrivateIpAddress"), p.str("SecondaryPrivateIpAddressCount")
	if (len(explicit) > 0) == (count != "") {
		return nil, fail("InvalidParameterCombination",
			"give exactly one of PrivateIpAddress and SecondaryPrivateIpAddressCount")
	}
	prefix, used := netip.MustParsePrefix(s.subnets[eni.SubnetID].CIDR), s.usedIPs(eni.SubnetID)
	first, last := prefix.Addr().Next().Next().Next().Next(), lastAddr(prefix) // AWS reserves these
	var add []string
	for _, v := range explicit {
		ip, err := netip.ParseAddr(v)
		if err != nil || !prefix.Contains(ip) || ip.Less(first) || ip == last {
			return nil, fail("InvalidParameterValue", "Address %s is not a usable address of subnet %s", v, prefix)
		}
		if used[ip.String()] || slices.Contains(add, ip.String()) {
			return nil, fail("InvalidIPAddress.InUse", "Address %s is in use", v)
		}
		add = append(add, ip.String())
	}
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return nil, fail("InvalidParameterValue", "bad SecondaryPrivateIpAddressCount %q", count)
		}
		for ip := first; prefix.Contains(ip) && ip != last && len(add) < n; ip = ip.Next() {
			if !used[ip.String()] {
				add = append(add, ip.String())
			}
		}
		if len(add) < n {
			return nil, fail("InsufficientFreeAddressesInSubnet", "subnet %s has only %d free addresses",
				eni.SubnetID, len(add))
		}
	}
	if limit := s.addressesPerENI(eni); len(eni.PrivateIPs)+len(add) > limit {
		return nil, fail("PrivateIpAddressLimitExceeded",
			"Number of private addresses will exceed limit of %d for %s", limit, eni.ID)
	}
	eni.PrivateIPs = append(eni.PrivateIPs, add...)
	set := el("assignedPrivateIpAddressesSet")
	for _, ip := range add {
		set.kids = append(set.kids, el("item", tx("privateIpAddress", ip)))
	}
	return []*node{tx("networkInterfaceId", eni.ID), set, tx("return", "true")}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

func (s *Server) unassignPrivateIPs(p params) ([]*node, error) {
	eni, err := s.eni(p.str("NetworkInterfaceId"))
	if err != nil {
		return nil, err
	}
	ips := p.list("PrivateIpAddress")
	if len(ips) == 0 {
		return nil, fail("MissingParameter", "The request must contain the parameter PrivateIpAddress")
	}
	for _, ip := range ips {
		switch i := slices.Index(eni.PrivateIPs, ip); {
		case i == 0:
			return nil, fail("InvalidParameterValue", "%s is the primary address of %s", ip, eni.ID)
		case i < 0:
			return nil, fail("InvalidParameterValue", "Some of the specified addresses are not assigned to "+
				"interface %s: %s", eni.ID, ip)
		}
	}
	for _, ip := range ips {
		if a := s.associated(eni.ID, ip); a != nil {
			disassociate(a)
		}
		eni.PrivateIPs = slices.DeleteFunc(eni.PrivateIPs, func(v string) bool { return v == ip })
	}
	return returnTrue(), nil
}

func disassociate(a *Address) {
	a.AssociationID, a.NetworkInterfaceID, a.PrivateIP, a.InstanceID = "", "", "", ""
}

func (s *Server) allocateAddress(p params) ([]*node, error) {
	if d := p.str("Domain"); d != "" && d != "vpc" {
		return nil, fail("InvalidParameterValue", "Domain %q is not supported, only vpc", d)
	}
	pool, prefix := "amazon", netip.MustParsePrefix(defaultPublicPool)
	if id := p.str("PublicIpv4Pool"); id != "" && id != "amazon" {
		pr, ok := s.pools[id]
		if !ok {
			return nil, fail("InvalidPublicIpv4PoolID.NotFound", "The pool ID '%s' does not exist", id)
		}
		pool, prefix = id, pr
	}
	tags, err := s.specTags(p, "elastic-ip")
	if err != nil {
		return nil, err
	}
	if len(s.addresses) >= s.addressLimit {
		return nil, fail("AddressLimitExceeded", "The maximum number of addresses (%d) has been reached.", s.addressLimit)
	}
	used, ip := s.allocated(), netip.Addr{}
	for a := prefix.Addr().Next(); prefix.Contains(a) && a != lastAddr(prefix); a = a.Next() {
		if !used[a.String()] {
			ip = a
			break
		}
	}
	if !ip.IsValid() {
		return nil, fail("InsufficientAddressCapacity", "pool %s has no free address", pool)
	}
	a := &Address{AllocationID: s.ec2ID("eipalloc"), PublicIP: ip.String(), Pool: pool, Tags: tags}
	s.addresses[a.AllocationID] = a
	if s.addressDelay > 0 {
		s.unseen[a.AllocationID] = s.addressDelay
	}
	return []*node{tx("publicIp", a.PublicIP), tx("allocationId", a.AllocationID), tx("domain", "vpc"),
		tx("publicIpv4Pool", pool), tx("networkBorderGroup", s.region)}, nil
}

func (s *Server) describeAddresses(p params) ([]*node, error) {
	fs, err := p.filters("allocation-id", "association-id", "network-interface-id", "private-ip-address",
		"public-ip", "instance-id", "domain")
	if err != nil {
		return nil, err
	}
	addrs, err := pick(s.addresses, p.list("AllocationId"), "InvalidAllocationID.NotFound", "allocation ID")
	if err != nil {
		return nil, err
	}
	publicIPs := p.list("PublicIp")
	for _, ip := range publicIPs {
		if !s.allocated()[ip] {
			return nil, fail("InvalidAddress.NotFound", "Address '%s' not found.", ip)
		}
	}
	set := el("addressesSet")
	for _, a := range addrs {
		if n := s.unseen[a.AllocationID]; n > 0 {
			s.unseen[a.AllocationID] = n - 1 // not visible yet
			continue
		}
		a = shown(s.staleAddresses, a.AllocationID, a)
		if (len(publicIPs) > 0 && !slices.Contains(publicIPs, a.PublicIP)) ||
			!matches(fs, a.Tags, map[string][]string{"allocation-id": {a.AllocationID},
				"association-id": {a.AssociationID}, "network-interface-id": {a.NetworkInterfaceID},
				"private-ip-address": {a.PrivateIP}, "public-ip": {a.PublicIP}, "instance-id": {a.InstanceID},
				"domain": {"vpc"}}) {
			continue
		}
		set.kids = append(set.kids, el("item", tx("publicIp", a.PublicIP), tx("allocationId", a.AllocationID),
			opt("associationId", a.AssociationID), tx("domain", "vpc"), opt("networkInterfaceId", a.NetworkInterfaceID),
			opt("privateIpAddress", a.PrivateIP), opt("instanceId", a.InstanceID),
			tx("publicIpv4Pool", a.Pool), tx("networkBorderGroup", s.region), tagList(a.Tags, true)))
	}
	return []*node{set}, nil
}

func (s *Server) address(allocationID string) (*Address, error) {
	a, ok := s.addresses[allocationID]
	if !ok || s.unseen[allocationID] > 0 {
		return nil, fail("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", allocationID)
	}
	return a, nil
}

func (s *Server) associateAddress(p params) ([]*node, error) {
	a, err := s.address(p.str("AllocationId"))
	if err != nil {
		return nil, err
	}
	eniID := p.str("NetworkInterfaceId")
	if id := p.str("InstanceId"); eniID == "" && id != "" {
		inst, ok := s.instances[id]
		if !ok {
			return nil, fail("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		eniID = inst.NetworkInterfaceID
	}
	eni, err := s.eni(eniID)
	if err != nil {
		return nil, err
	}
	ip := orDefault(p.str("PrivateIpAddress"), eni.PrivateIPs[0])
	if !slices.Contains(eni.PrivateIPs, ip) {
		return nil, fail("InvalidParameterValue", "The private IP address %s is not assigned to %s", ip, eni.ID)
	}
	if a.AssociationID != "" {
		if a.NetworkInterfaceID == eni.ID && a.PrivateIP == ip {
			return []*node{tx("associationId", a.AssociationID), tx("return", "true")}, nil
		}
		if p.str("AllowReassociation") != "true" {
			return nil, fail("Resource.AlreadyAssociated", "resource %s is already associated with %s",
				a.AllocationID, a.AssociationID)
		}
	}
	if other := s.associated(eni.ID, ip); other != nil {
		s.addressChanged(other)
		disassociate(other) // as AWS: the new address replaces the old one
	}
	s.addressChanged(a)
	a.AssociationID, a.NetworkInterfaceID, a.PrivateIP, a.InstanceID = s.ec2ID("eipassoc"), eni.ID, ip, eni.InstanceID
	return []*node{tx("associationId", a.AssociationID), tx("return", "true")}, nil
}

func (s *Server) disassociateAddress(p params) ([]*node, error) {
	id := p.str("AssociationId")
	for _, a := range s.addresses {
		if id != "" && a.AssociationID == id {
			s.addressChanged(a)
			disassociate(a)
			return returnTrue(), nil
		}
	}
	return nil, fail("InvalidAssociationID.NotFound", "The association ID '%s' does not exist", id)
}

func (s *Server) releaseAddress(p params) ([]*node, error) {
	a, err := s.address(p.str("AllocationId"))
	if err != nil {
		return nil, err
	}
	if a.AssociationID != "" {
		return nil, fail("InvalidIPAddress.InUse", "Address %s is in use by %s", a.PublicIP, a.AssociationID)
	}
	delete(s.addresses, a.AllocationID)
	delete(s.staleAddresses, a.AllocationID)
	return returnTrue(), nil
}

// ec2Tags returns the tags of an Elastic IP allocation, subnet or instance.
func (s *Server) ec2Tags(id string) (map[string]string, error) {
	switch {
	case strings.HasPrefix(id, "eipalloc-"):
		a, err := s.address(id)
		if err != nil {
			return nil, err
		}
		return a.Tags, nil
	case strings.HasPrefix(id, "subnet-"):
		if sn, ok := s.subnets[id]; ok {
			return sn.Tags, nil
		}
		return nil, fail("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
	case strings.HasPrefix(id, "i-"):
		if inst, ok := s.instances[id]; ok {
			return inst.Tags, nil
		}
		return nil, fail("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	return nil, fail("InvalidID", "The ID '%s' is not valid (awsdouble tags Elastic IPs, subnets and instances)", id)
}

// taggedResources resolves CreateTags' and DeleteTags' ResourceId.N.
func (s *Server) taggedResources(p params) ([]map[string]string, error) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, fail("MissingParameter", "The request must contain the parameter ResourceId")
	}
	var out []map[string]string
	for _, id := range ids {
		t, err := s.ec2Tags(id)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (s *Server) createTags(p params) ([]*node, error) {
	resources, err := s.taggedResources(p)
	if err != nil {
		return nil, err
	}
	tags, err := p.tags("Tag")
	if err != nil {
		return nil, err
	}
	s.ec2TagsChanging(p.list("ResourceId"))
	for _, t := range resources {
		maps.Copy(t, tags)
	}
	return returnTrue(), nil
}

// deleteTags removes the keys given; a key given with a Value (even an empty
// one) is removed only where it has that value; no Tag at all removes all.
func (s *Server) deleteTags(p params) ([]*node, error) {
	resources, err := s.taggedResources(p)
	if err != nil {
		return nil, err
	}
	items := p.structs("Tag", "Key")
	s.ec2TagsChanging(p.list("ResourceId"))
	for _, t := range resources {
		if len(items) == 0 {
			clear(t)
		}
		for _, item := range items {
			k := p.str(item + "Key")
			if v, ok := t[k]; ok && (!p.has(item+"Value") || v == p.str(item+"Value")) {
				delete(t, k)
			}
		}
	}
	return returnTrue(), nil
}

// ec2TagsChanging is called before the tags of ids change: those of
// Elastic IPs are shown late (SetEC2ChangeVisibilityDelay).
func (s *Server) ec2TagsChanging(ids []string) {
	for _, id := range ids {
		if a, ok := s.addresses[id]; ok {
			s.addressChanged(a)
		}
	}
}

// groupSet lists security groups as DescribeInstances does.
func (s *Server) groupSet(ids []string) *node {
	set := el("groupSet")
	for _, id := range ids {
		set.kids = append(set.kids, el("item", tx("groupId", id), opt("groupName", s.sgs[id].Name)))
	}
	return set
}

// ipv6Associations is a subnet's ipv6CidrBlockAssociationSet.
func ipv6Associations(sn *Subnet) *node {
	set := el("ipv6CidrBlockAssociationSet")
	if sn.IPv6CIDR != "" {
		set.kids = append(set.kids, el("item", tx("associationId", "subnet-cidr-assoc-"+strings.TrimPrefix(sn.ID, "subnet-")),
			tx("ipv6CidrBlock", sn.IPv6CIDR), el("ipv6CidrBlockState", tx("state", "associated"))))
	}
	return set
}
