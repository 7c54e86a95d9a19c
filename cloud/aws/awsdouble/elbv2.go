package awsdouble

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// nlbHostedZoneID is the Route 53 zone of network load balancers in
// eu-west-1; the double returns it whatever the region.
const nlbHostedZoneID = "Z2IFOLAFXWLO4F"

func (s *Server) elbv2Handler(action string) handler {
	return map[string]handler{
		"CreateLoadBalancer": s.createLoadBalancer, "DescribeLoadBalancers": s.describeLoadBalancers,
		"DeleteLoadBalancer": s.deleteLoadBalancer, "CreateTargetGroup": s.createTargetGroup,
		"DescribeTargetGroups": s.describeTargetGroups, "ModifyTargetGroup": s.modifyTargetGroup,
		"DeleteTargetGroup": s.deleteTargetGroup, "RegisterTargets": s.registerTargets,
		"DeregisterTargets": s.deregisterTargets, "DescribeTargetHealth": s.describeTargetHealth,
		"CreateListener": s.createListener, "DescribeListeners": s.describeListeners,
		"ModifyListener": s.modifyListener, "DeleteListener": s.deleteListener,
		"DescribeTags": s.describeTags, "AddTags": s.addTags, "RemoveTags": s.removeTags,
		"SetSecurityGroups": s.setSecurityGroups, "DescribeLoadBalancerAttributes": s.describeLoadBalancerAttributes,
		"ModifyLoadBalancerAttributes": s.modifyLoadBalancerAttributes, "DescribeTargetGroupAttributes": s.describeTargetGroupAttributes,
		"ModifyTargetGroupAttributes": s.modifyTargetGroupAttributes,
	}[action]
}

// validName checks a load balancer or target group name as AWS does.
func validName(kind, name string) error {
	ok := name != "" && len(name) <= 32 && !strings.HasPrefix(name, "-") && !strings.HasSuffix(name, "-")
	for _, r := range name {
		ok = ok && (r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}
	if !ok {
		return fail("ValidationError", "%s name '%s' must be 1 to 32 alphanumeric characters or hyphens, "+
			"and must not begin or end with a hyphen", kind, name)
	}
	return nil
}

func (s *Server) createLoadBalancer(p params) ([]*node, error) {
	name := p.str("Name")
	if err := validName("Load balancer", name); err != nil {
		return nil, err
	}
	lb := &LoadBalancer{Name: name, Type: orDefault(p.str("Type"), "application"),
		Scheme: orDefault(p.str("Scheme"), "internet-facing"), IPAddressType: orDefault(p.str("IpAddressType"), "ipv4"),
		Subnets: p.list("Subnets.member"), SecurityGroups: p.list("SecurityGroups.member"),
		SourceNATIPv6: p.str("EnablePrefixForIpv6SourceNat") == "on"}
	if err := s.subnetMappings(p, lb); err != nil {
		return nil, err
	}
	switch {
	case lb.SourceNATIPv6 && lb.IPAddressType != "dualstack":
		return nil, fail("ValidationError", "EnablePrefixForIpv6SourceNat needs IpAddressType dualstack")
	case lb.SourceNATIPv6 && len(p.list("Subnets.member")) > 0:
		return nil, fail("ValidationError", "EnablePrefixForIpv6SourceNat needs SubnetMappings with a SourceNatIpv6Prefix")
	case lb.Type != "network":
		return nil, fail("ValidationError", "awsdouble supports only Type=network, not '%s'", lb.Type)
	case !oneOf(lb.Scheme, "internet-facing", "internal"):
		return nil, fail("ValidationError", "Scheme '%s' is not valid", lb.Scheme)
	case !oneOf(lb.IPAddressType, "ipv4", "dualstack"):
		return nil, fail("ValidationError", "IpAddressType '%s' is not valid", lb.IPAddressType)
	case len(lb.Subnets) == 0:
		return nil, fail("ValidationError", "At least one subnet must be specified")
	}
	zones := map[string]bool{}
	for _, id := range lb.Subnets {
		sn, ok := s.subnets[id]
		switch {
		case !ok:
			return nil, fail("SubnetNotFound", "The subnet ID '%s' was not found", id)
		case zones[sn.AvailabilityZone]:
			return nil, fail("InvalidConfigurationRequest", "A load balancer cannot be attached to multiple "+
				"subnets in the same Availability Zone (%s)", sn.AvailabilityZone)
		case lb.VPCID != "" && sn.VPCID != lb.VPCID:
			return nil, fail("InvalidConfigurationRequest", "subnets %v are not all in one VPC", lb.Subnets)
		case lb.IPAddressType == "dualstack" && sn.IPv6CIDR == "":
			return nil, fail("InvalidConfigurationRequest", "Subnet '%s' does not have an IPv6 CIDR block, "+
				"which a dualstack load balancer needs", id)
		}
		zones[sn.AvailabilityZone], lb.VPCID = true, sn.VPCID
	}
	for _, id := range lb.SecurityGroups {
		if sg, ok := s.sgs[id]; !ok || sg.VPCID != lb.VPCID || s.notYetSeen(id) {
			return nil, fail("InvalidSecurityGroup", "Security group '%s' does not exist in VPC '%s'", id, lb.VPCID)
		}
	}
	tags, err := p.tags("Tags.member")
	if err != nil {
		return nil, err
	}
	if old := s.lbByName(name); old != nil {
		if old.Type == lb.Type && old.Scheme == lb.Scheme && old.IPAddressType == lb.IPAddressType &&
			sameSet(old.Subnets, lb.Subnets) && sameSet(old.SecurityGroups, lb.SecurityGroups) {
			return []*node{el("LoadBalancers", s.lbMember(old))}, nil
		}
		return nil, fail("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, "+
			"but with different settings", name)
	}
	var hexID string
	lb.ARN, hexID = s.elbARN("loadbalancer/net/" + name)
	lb.DNSName = fmt.Sprintf("%s-%s.elb.%s.amazonaws.com", name, hexID, s.region)
	lb.Tags, lb.State = tags, "active"
	if s.provisionDescribes > 0 {
		lb.State, s.pending[lb.ARN] = "provisioning", s.provisionDescribes
	}
	s.lbs[lb.ARN] = lb
	if s.elbDelay > 0 {
		s.unseen[lb.ARN] = s.elbDelay
	}
	s.tagsChanged(lb.ARN, nil)
	s.associateMapped(lb)
	return []*node{el("LoadBalancers", s.lbMember(lb))}, nil
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func (s *Server) lbMember(lb *LoadBalancer) *node {
	zones := el("AvailabilityZones")
	for _, id := range lb.Subnets {
		zones.kids = append(zones.kids, el("member", tx("ZoneName", s.subnets[id].AvailabilityZone), tx("SubnetId", id)))
	}
	return el("member", tx("LoadBalancerArn", lb.ARN), tx("DNSName", lb.DNSName),
		tx("CanonicalHostedZoneId", nlbHostedZoneID), tx("LoadBalancerName", lb.Name), tx("Scheme", lb.Scheme),
		tx("VpcId", lb.VPCID), el("State", tx("Code", lb.State)), tx("Type", lb.Type), zones,
		tx("IpAddressType", lb.IPAddressType), members("SecurityGroups", lb.SecurityGroups))
}

func (s *Server) lbByName(name string) *LoadBalancer {
	for _, lb := range s.lbs {
		if lb.Name == name {
			return lb
		}
	}
	return nil
}

func (s *Server) loadBalancer(arn string) (*LoadBalancer, error) {
	lb, ok := s.lbs[arn]
	if !ok {
		return nil, fail("LoadBalancerNotFound", "Load balancer '%s' not found", arn)
	}
	return lb, nil
}

func (s *Server) describeLoadBalancers(p params) ([]*node, error) {
	names, arns := p.list("Names.member"), p.list("LoadBalancerArns.member")
	if len(names) > 0 && len(arns) > 0 {
		return nil, fail("ValidationError", "Load balancer names and load balancer ARNs cannot be specified together")
	}
	var out []*LoadBalancer
	for _, name := range names {
		lb := s.lbByName(name)
		if lb == nil || s.notYetSeen(lb.ARN) {
			return nil, fail("LoadBalancerNotFound", "Load balancers '[%s]' not found", name)
		}
		out = append(out, lb)
	}
	for _, arn := range arns {
		lb, err := s.loadBalancer(arn)
		if err == nil && s.notYetSeen(arn) {
			err = fail("LoadBalancerNotFound", "Load balancer '%s' not found", arn)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, lb)
	}
	if len(names)+len(arns) == 0 {
		for _, arn := range slices.Sorted(maps.Keys(s.lbs)) {
			if !s.notYetSeen(arn) {
				out = append(out, s.lbs[arn])
			}
		}
	}
	list := el("LoadBalancers")
	for _, lb := range out {
		if n, ok := s.pending[lb.ARN]; ok {
			s.pending[lb.ARN] = n - 1
			if n <= 1 {
				lb.State = "active"
				delete(s.pending, lb.ARN)
			}
		}
		list.kids = append(list.kids, s.lbMember(lb))
	}
	return []*node{list}, nil
}

// deleteLoadBalancer deletes its listeners too; target groups stay, as in
// AWS. Deleting a missing load balancer succeeds, as in AWS.
func (s *Server) deleteLoadBalancer(p params) ([]*node, error) {
	arn := p.str("LoadBalancerArn")
	if arn == "" {
		return nil, fail("ValidationError", "LoadBalancerArn is required")
	}
	maps.DeleteFunc(s.listeners, func(_ string, l *Listener) bool { return l.LoadBalancerARN == arn })
	if lb := s.lbs[arn]; lb != nil {
		s.releaseMapped(lb)
	}
	delete(s.lbs, arn)
	delete(s.pending, arn)
	return nil, nil
}

// listenerSettings reads Protocol, Port and DefaultActions into l, keeping
// l's values for parameters that are absent.
func (s *Server) listenerSettings(p params, l *Listener) error {
	l.Protocol = orDefault(p.str("Protocol"), l.Protocol)
	port, err := p.int32("Port", l.Port)
	if err != nil {
		return err
	}
	l.Port = port
	if items := p.structs("DefaultActions.member", "Type"); len(items) > 0 {
		l.Actions = nil
		for _, item := range items {
			l.Actions = append(l.Actions, Action{Type: p.str(item + "Type"), TargetGroupARN: p.str(item + "TargetGroupArn")})
		}
	}
	switch {
	case !oneOf(l.Protocol, "TCP", "UDP", "TCP_UDP", "TLS"):
		return fail("ValidationError", "Protocol '%s' is not valid for a network load balancer", l.Protocol)
	case l.Port < 1 || l.Port > 65535:
		return fail("ValidationError", "Port %d is not between 1 and 65535", l.Port)
	case len(l.Actions) == 0:
		return fail("ValidationError", "DefaultActions must contain an action")
	}
	if lb := s.lbs[l.LoadBalancerARN]; lb != nil && lb.IPAddressType == "dualstack" && !lb.SourceNATIPv6 && oneOf(l.Protocol, "UDP", "TCP_UDP") {
		return fail("ValidationError", "A dualstack load balancer needs EnablePrefixForIpv6SourceNat on for %s listeners", l.Protocol)
	}
	for _, a := range l.Actions {
		s.inUse[a.TargetGroupARN] = s.inUseDeletes
		if a.Type != "forward" {
			return fail("ValidationError", "awsdouble supports only forward actions, not '%s'", a.Type)
		}
		tg, err := s.targetGroup(a.TargetGroupARN)
		if err != nil {
			return err
		}
		if lb := s.lbs[l.LoadBalancerARN]; lb != nil && tg.IPAddressType == "ipv6" && lb.IPAddressType != "dualstack" {
			// The message as ELB gives it; the code as documented for
			// CreateListener's invalid configurations.
			return fail("InvalidConfigurationRequest", "You cannot associate an IPv6 target group with a load balancer "+
				"that has an '%s' IP address type", lb.IPAddressType)
		}
		for _, lbARN := range s.tgLoadBalancers(a.TargetGroupARN) {
			if lbARN != l.LoadBalancerARN {
				return fail("TargetGroupAssociationLimit", "The target group '%s' is already associated with "+
					"load balancer '%s'", a.TargetGroupARN, lbARN)
			}
		}
	}
	for _, other := range s.listeners {
		if other.LoadBalancerARN == l.LoadBalancerARN && other.Port == l.Port && other.ARN != l.ARN {
			if l.ARN == "" && other.Protocol == l.Protocol && slices.Equal(other.Actions, l.Actions) {
				*l = *other // CreateListener is idempotent
				return nil
			}
			return fail("DuplicateListener", "A listener already exists on port %d of '%s'", l.Port, l.LoadBalancerARN)
		}
	}
	return nil
}

func listenerMember(l *Listener) *node {
	actions := el("DefaultActions")
	for _, a := range l.Actions {
		actions.kids = append(actions.kids, el("member", tx("Type", a.Type), tx("TargetGroupArn", a.TargetGroupARN)))
	}
	return el("member", tx("ListenerArn", l.ARN), tx("LoadBalancerArn", l.LoadBalancerARN),
		tx("Port", itoa(l.Port)), tx("Protocol", l.Protocol), actions)
}

func (s *Server) createListener(p params) ([]*node, error) {
	lb, err := s.loadBalancer(p.str("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	l := &Listener{LoadBalancerARN: lb.ARN}
	if err := s.listenerSettings(p, l); err != nil {
		return nil, err
	}
	if l.ARN == "" {
		if l.Tags, err = p.tags("Tags.member"); err != nil {
			return nil, err
		}
		l.ARN, _ = s.elbARN("listener/net/" + lb.Name + "/" + lb.ARN[strings.LastIndex(lb.ARN, "/")+1:])
		s.listeners[l.ARN] = l
		if s.elbDelay > 0 {
			s.unseen[l.ARN] = s.elbDelay
		}
		s.tagsChanged(l.ARN, nil)
	}
	return []*node{el("Listeners", listenerMember(l))}, nil
}

func (s *Server) listener(arn string) (*Listener, error) {
	l, ok := s.listeners[arn]
	if !ok {
		return nil, fail("ListenerNotFound", "Listener '%s' not found", arn)
	}
	return l, nil
}

func (s *Server) describeListeners(p params) ([]*node, error) {
	lbARN, arns := p.str("LoadBalancerArn"), p.list("ListenerArns.member")
	if (lbARN == "") == (len(arns) == 0) {
		return nil, fail("ValidationError", "give exactly one of LoadBalancerArn and ListenerArns")
	}
	if lbARN != "" {
		if _, err := s.loadBalancer(lbARN); err != nil {
			return nil, err
		}
		for _, arn := range slices.Sorted(maps.Keys(s.listeners)) {
			if s.listeners[arn].LoadBalancerARN == lbARN && !s.notYetSeen(arn) {
				arns = append(arns, arn)
			}
		}
	} else {
		for _, arn := range arns {
			if _, ok := s.listeners[arn]; ok && s.notYetSeen(arn) {
				return nil, fail("ListenerNotFound", "Listener '%s' not found", arn)
			}
		}
	}
	list := el("Listeners")
	for _, arn := range arns {
		l, err := s.listener(arn)
		if err != nil {
			return nil, err
		}
		list.kids = append(list.kids, listenerMember(l))
	}
	return []*node{list}, nil
}

func (s *Server) modifyListener(p params) ([]*node, error) {
	l, err := s.listener(p.str("ListenerArn"))
	if err != nil {
		return nil, err
	}
	changed := *l
	changed.Actions = slices.Clone(l.Actions)
	if err := s.listenerSettings(p, &changed); err != nil {
		return nil, err
	}
	*l = changed
	return []*node{el("Listeners", listenerMember(l))}, nil
}

func (s *Server) deleteListener(p params) ([]*node, error) {
	l, err := s.listener(p.str("ListenerArn"))
	if err != nil {
		return nil, err
	}
	delete(s.listeners, l.ARN)
	return nil, nil
}

// elbTags returns the tags of a load balancer, target group or listener.
func (s *Server) elbTags(arn string) (map[string]string, error) {
	switch {
	case s.lbs[arn] != nil:
		return s.lbs[arn].Tags, nil
	case s.tgs[arn] != nil:
		return s.tgs[arn].Tags, nil
	case s.listeners[arn] != nil:
		return s.listeners[arn].Tags, nil
	case strings.Contains(arn, ":targetgroup/"):
		return nil, fail("TargetGroupNotFound", "Target group '%s' not found", arn)
	case strings.Contains(arn, ":listener/"):
		return nil, fail("ListenerNotFound", "Listener '%s' not found", arn)
	}
	return nil, fail("LoadBalancerNotFound", "Load balancer '%s' not found", arn)
}

// taggedARNs resolves ResourceArns.member.N (1 to 20 of them).
func (s *Server) taggedARNs(p params) ([]string, []map[string]string, error) {
	arns := p.list("ResourceArns.member")
	if len(arns) == 0 || len(arns) > 20 {
		return nil, nil, fail("ValidationError", "ResourceArns must have 1 to 20 members, not %d", len(arns))
	}
	var tags []map[string]string
	for _, arn := range arns {
		t, err := s.elbTags(arn)
		if err != nil {
			return nil, nil, err
		}
		tags = append(tags, t)
	}
	return arns, tags, nil
}

func (s *Server) describeTags(p params) ([]*node, error) {
	arns, tags, err := s.taggedARNs(p)
	if err != nil {
		return nil, err
	}
	list := el("TagDescriptions")
	for i, arn := range arns {
		shown := tags[i]
		if st, ok := s.staleTags[arn]; ok {
			shown = st.tags
			if st.n--; st.n > 0 {
				s.staleTags[arn] = st
			} else {
				delete(s.staleTags, arn)
			}
		}
		list.kids = append(list.kids, el("member", tx("ResourceArn", arn), tagList(shown, false)))
	}
	return []*node{list}, nil
}

// staleTags are the tags DescribeTags shows for a resource whose tags
// changed a moment ago, for n more calls (SetELBTagVisibilityDelay).
type staleTags struct {
	tags map[string]string
	n    int
}

// tagsChanged notes that the resource's tags were before (nil for a new
// resource) and have changed, when tags are shown late; a change while an
// older one is not shown yet keeps showing the older tags.
func (s *Server) tagsChanged(arn string, before map[string]string) {
	if s.tagDelay == 0 {
		return
	}
	st, ok := s.staleTags[arn]
	if !ok {
		st.tags = maps.Clone(before)
	}
	st.n = s.tagDelay
	s.staleTags[arn] = st
}

func (s *Server) addTags(p params) ([]*node, error) {
	_, resources, err := s.taggedARNs(p)
	if err != nil {
		return nil, err
	}
	add, err := p.tags("Tags.member")
	if err != nil {
		return nil, err
	}
	for _, t := range resources {
		merged := maps.Clone(t)
		maps.Copy(merged, add)
		if len(merged) > 50 {
			return nil, fail("TooManyTags", "A resource can have at most 50 tags")
		}
	}
	arns := p.list("ResourceArns.member")
	for i, t := range resources {
		merged := maps.Clone(t)
		maps.Copy(merged, add)
		if !maps.Equal(merged, t) { // tags set again as they are change nothing
			s.tagsChanged(arns[i], t)
		}
		maps.Copy(t, add)
	}
	return nil, nil
}

func (s *Server) removeTags(p params) ([]*node, error) {
	_, resources, err := s.taggedARNs(p)
	if err != nil {
		return nil, err
	}
	for _, t := range resources {
		for _, k := range p.list("TagKeys.member") {
			delete(t, k)
		}
	}
	return nil, nil
}

// setSecurityGroups changes a network load balancer's security groups; one
// created without any cannot get one, and one created with some cannot
// lose them all, as in AWS.
func (s *Server) setSecurityGroups(p params) ([]*node, error) {
	lb, err := s.loadBalancer(p.str("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	groups := p.list("SecurityGroups.member")
	switch {
	case len(lb.SecurityGroups) == 0 && len(groups) > 0:
		return nil, fail("InvalidConfigurationRequest", "You cannot set security groups on a Network Load Balancer "+
			"which was created without any security groups.")
	case len(lb.SecurityGroups) > 0 && len(groups) == 0:
		return nil, fail("InvalidConfigurationRequest", "You cannot remove all security groups from a Network Load Balancer "+
			"which was created with security groups.")
	}
	for _, id := range groups {
		if sg, ok := s.sgs[id]; !ok || sg.VPCID != lb.VPCID || s.notYetSeen(id) {
			return nil, fail("InvalidSecurityGroup", "Security group '%s' does not exist in VPC '%s'", id, lb.VPCID)
		}
	}
	lb.SecurityGroups = groups
	return []*node{members("SecurityGroupIds", groups)}, nil
}
