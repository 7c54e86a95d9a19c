package awsdouble

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// SecurityGroup is a VPC security group with its ingress rules (egress is
// not modelled), added with AddSecurityGroup or CreateSecurityGroup.
type SecurityGroup struct {
	ID          string
	Name        string
	Description string
	VPCID       string
	Ingress     []Rule
	Tags        map[string]string
}

// Rule is one ingress rule: a protocol ("tcp", "udp", "-1"), a port range
// and one source, a CIDR (IPv4 or IPv6) or a security group.
type Rule struct {
	Protocol      string
	FromPort      int32
	ToPort        int32
	CIDR          string
	SourceGroupID string
}

// AddSecurityGroup adds a security group (a node group, for example) and
// returns its ID. It panics when no subnet is in the VPC.
func (s *Server) AddSecurityGroup(name, vpcID string, tags map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.vpcExists(vpcID) {
		panic(fmt.Sprintf("awsdouble: AddSecurityGroup %s: unknown VPC %q", name, vpcID))
	}
	sg := &SecurityGroup{ID: s.ec2ID("sg"), Name: name, Description: name, VPCID: vpcID, Tags: cloneTags(tags)}
	s.sgs[sg.ID] = sg
	return sg.ID
}

// SetInstanceSecurityGroups sets the security groups of an instance's
// interface. It panics on an unknown instance or group.
func (s *Server) SetInstanceSecurityGroups(id string, groups ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	for _, g := range groups {
		if _, known := s.sgs[g]; !known {
			ok = false
		}
	}
	if !ok {
		panic(fmt.Sprintf("awsdouble: SetInstanceSecurityGroups(%q, %v): unknown instance or group", id, groups))
	}
	inst.SecurityGroups = slices.Clone(groups)
}

func (s *Server) vpcExists(vpcID string) bool {
	for _, sn := range s.subnets {
		if sn.VPCID == vpcID {
			return true
		}
	}
	return false
}

func (s *Server) securityGroup(id string) (*SecurityGroup, error) {
	sg, ok := s.sgs[id]
	if !ok || s.notYetSeen(id) {
		return nil, fail("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return sg, nil
}

func (s *Server) createSecurityGroup(p params) ([]*node, error) {
	name, desc, vpc := p.str("GroupName"), p.str("GroupDescription"), p.str("VpcId")
	switch {
	case name == "" || len(name) > 255 || strings.HasPrefix(strings.ToLower(name), "sg-"):
		return nil, fail("InvalidParameterValue", "Invalid value '%s' for groupName", name)
	case desc == "" || len(desc) > 255:
		return nil, fail("MissingParameter", "The request must contain the parameter groupDescription")
	case !s.vpcExists(vpc):
		return nil, fail("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", vpc)
	}
	for _, sg := range s.sgs {
		if sg.VPCID == vpc && sg.Name == name {
			return nil, fail("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
		}
	}
	tags, err := s.specTags(p, "security-group")
	if err != nil {
		return nil, err
	}
	sg := &SecurityGroup{ID: s.ec2ID("sg"), Name: name, Description: desc, VPCID: vpc, Tags: tags}
	s.sgs[sg.ID] = sg
	if s.sgDelay > 0 {
		s.unseen[sg.ID] = s.sgDelay
	}
	return []*node{tx("return", "true"), tx("groupId", sg.ID), tagList(sg.Tags, true)}, nil
}

func (s *Server) describeSecurityGroups(p params) ([]*node, error) {
	fs, err := p.filters("group-id", "group-name", "vpc-id", "ip-permission.group-id")
	if err != nil {
		return nil, err
	}
	groups, err := pick(s.sgs, p.list("GroupId"), "InvalidGroup.NotFound", "security group")
	if err != nil {
		return nil, err
	}
	named := len(p.list("GroupId")) > 0
	visible := groups[:0]
	for _, sg := range groups {
		switch {
		case !s.notYetSeen(sg.ID):
			visible = append(visible, sg)
		case named:
			return nil, fail("InvalidGroup.NotFound", "The security group '%s' does not exist", sg.ID)
		}
	}
	groups = visible
	set := el("securityGroupInfo")
	for _, sg := range groups {
		sg = shown(s.staleSGs, sg.ID, sg)
		var sources []string
		for _, r := range sg.Ingress {
			if r.SourceGroupID != "" {
				sources = append(sources, r.SourceGroupID)
			}
		}
		if !matches(fs, sg.Tags, map[string][]string{"group-id": {sg.ID}, "group-name": {sg.Name}, "vpc-id": {sg.VPCID},
			"ip-permission.group-id": sources}) {
			continue
		}
		perms := el("ipPermissions")
		for _, r := range sg.Ingress {
			src := el("ipRanges", el("item", tx("cidrIp", r.CIDR)))
			switch {
			case r.SourceGroupID != "":
				src = el("groups", el("item", tx("groupId", r.SourceGroupID), tx("userId", AccountID)))
			case strings.Contains(r.CIDR, ":"):
				src = el("ipv6Ranges", el("item", tx("cidrIpv6", r.CIDR)))
			}
			perms.kids = append(perms.kids, el("item", tx("ipProtocol", r.Protocol), tx("fromPort", itoa(r.FromPort)),
				tx("toPort", itoa(r.ToPort)), src))
		}
		set.kids = append(set.kids, el("item", tx("ownerId", AccountID), tx("groupId", sg.ID), tx("groupName", sg.Name),
			tx("groupDescription", sg.Description), tx("vpcId", sg.VPCID), perms, tagList(sg.Tags, true)))
	}
	return []*node{set}, nil
}

// rules reads IpPermissions.N into single-source rules, validated as EC2
// does.
func (s *Server) rules(p params) ([]Rule, error) {
	var out []Rule
	for _, item := range p.structs("IpPermissions", "IpProtocol") {
		proto := strings.ToLower(p.str(item + "IpProtocol"))
		from, err := p.int32(item+"FromPort", -1)
		if err != nil {
			return nil, err
		}
		to, err := p.int32(item+"ToPort", -1)
		if err != nil {
			return nil, err
		}
		switch {
		case !oneOf(proto, "tcp", "udp", "-1"):
			return nil, fail("InvalidParameterValue", "Invalid value '%s' for IP protocol", proto)
		case proto != "-1" && (from < 0 || to > 65535 || from > to):
			return nil, fail("InvalidParameterValue", "Invalid port range %d-%d", from, to)
		}
		base := Rule{Protocol: proto, FromPort: from, ToPort: to}
		n := len(out)
		for _, fam := range []struct {
			list, field string
			v6          bool
		}{{"IpRanges", "CidrIp", false}, {"Ipv6Ranges", "CidrIpv6", true}} {
			for _, r := range p.structs(item+fam.list, fam.field) {
				cidr := p.str(r + fam.field)
				pfx, err := netip.ParsePrefix(cidr)
				if err != nil || pfx.Addr().Is6() != fam.v6 || pfx.Masked() != pfx {
					return nil, fail("InvalidParameterValue", "CIDR block %s is malformed", cidr)
				}
				rule := base
				rule.CIDR = pfx.String()
				out = append(out, rule)
			}
		}
		for _, g := range p.structs(item+"Groups", "GroupId") {
			if _, err := s.securityGroup(p.str(g + "GroupId")); err != nil {
				return nil, err
			}
			rule := base
			rule.SourceGroupID = p.str(g + "GroupId")
			out = append(out, rule)
		}
		if len(out) == n {
			return nil, fail("InvalidParameterValue", "a permission must name a CIDR or a security group")
		}
	}
	if len(out) == 0 {
		return nil, fail("MissingParameter", "The request must contain the parameter IpPermissions")
	}
	return out, nil
}

// authorizeIngress adds rules; one that exists already fails the whole
// call with InvalidPermission.Duplicate, as in EC2. A group holds at most
// 60 rules per address family (the default quota).
func (s *Server) authorizeIngress(p params) ([]*node, error) {
	sg, err := s.securityGroup(p.str("GroupId"))
	if err != nil {
		return nil, err
	}
	rules, err := s.rules(p)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if slices.Contains(sg.Ingress, r) {
			return nil, fail("InvalidPermission.Duplicate", "the specified rule \"peer: %s%s, %s, ports %d-%d, ALLOW\" already exists",
				r.CIDR, r.SourceGroupID, r.Protocol, r.FromPort, r.ToPort)
		}
	}
	if len(sg.Ingress)+len(rules) > 120 {
		return nil, fail("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.")
	}
	s.sgChanged(sg)
	sg.Ingress = append(sg.Ingress, rules...)
	return returnTrue(), nil
}

// revokeIngress removes rules; one that does not exist fails the call
// with InvalidPermission.NotFound.
func (s *Server) revokeIngress(p params) ([]*node, error) {
	sg, err := s.securityGroup(p.str("GroupId"))
	if err != nil {
		return nil, err
	}
	rules, err := s.rules(p)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if !slices.Contains(sg.Ingress, r) {
			return nil, fail("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
		}
	}
	s.sgChanged(sg)
	sg.Ingress = slices.DeleteFunc(sg.Ingress, func(r Rule) bool { return slices.Contains(rules, r) })
	return returnTrue(), nil
}

// deleteSecurityGroup refuses a group that a load balancer, an instance or
// another group's rule still uses (DependencyViolation).
func (s *Server) deleteSecurityGroup(p params) ([]*node, error) {
	sg, err := s.securityGroup(p.str("GroupId"))
	if err != nil {
		return nil, err
	}
	inUse := false
	for _, lb := range s.lbs {
		inUse = inUse || slices.Contains(lb.SecurityGroups, sg.ID)
	}
	for _, inst := range s.instances {
		inUse = inUse || slices.Contains(inst.SecurityGroups, sg.ID)
	}
	for _, other := range s.sgs {
		inUse = inUse || slices.ContainsFunc(other.Ingress, func(r Rule) bool { return r.SourceGroupID == sg.ID })
	}
	if inUse {
		return nil, fail("DependencyViolation", "resource %s has a dependent object", sg.ID)
	}
	delete(s.sgs, sg.ID)
	delete(s.staleSGs, sg.ID)
	return returnTrue(), nil
}

// SetSecurityGroupVisibilityDelay makes each security group created
// afterwards unknown to the next n calls that name it or list it
// (InvalidGroup.NotFound, or missing from DescribeSecurityGroups;
// CreateLoadBalancer refuses it as InvalidSecurityGroup), as EC2's eventual
// consistency can right after CreateSecurityGroup. Default 0.
func (s *Server) SetSecurityGroupVisibilityDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sgDelay = n
}

// notYetSeen reports whether a new resource is still invisible, counting
// this call against its delay; s.mu is held.
func (s *Server) notYetSeen(id string) bool {
	n := s.unseen[id]
	if n <= 0 {
		return false
	}
	s.unseen[id] = n - 1
	return true
}
