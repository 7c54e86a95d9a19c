package awsdouble

import (
	"maps"
	"net/netip"
	"slices"
)

// Default attributes of network load balancers and their instance target
// groups, as AWS reports them for new ones. Modify accepts only these keys.
var (
	defaultLBAttributes = map[string]string{
		"deletion_protection.enabled":            "false",
		"load_balancing.cross_zone.enabled":      "false",
		"access_logs.s3.enabled":                 "false",
		"dns_record.client_routing_policy":       "any_availability_zone",
		"ipv6.deny_all_igw_traffic":              "false",
		"zonal_shift.config.enabled":             "false",
		"secondary_ips.auto_assigned.per_subnet": "0",
	}
	defaultTGAttributes = map[string]string{
		"deregistration_delay.timeout_seconds":                                "300",
		"deregistration_delay.connection_termination.enabled":                 "false",
		"preserve_client_ip.enabled":                                          "true",
		"proxy_protocol_v2.enabled":                                           "false",
		"stickiness.enabled":                                                  "false",
		"stickiness.type":                                                     "source_ip",
		"load_balancing.cross_zone.enabled":                                   "use_load_balancer_configuration",
		"target_health_state.unhealthy.connection_termination.enabled":        "true",
		"target_health_state.unhealthy.draining_interval_seconds":             "0",
		"target_group_health.dns_failover.minimum_healthy_targets.count":      "1",
		"target_group_health.dns_failover.minimum_healthy_targets.percentage": "off",
	}
)

// SubnetAddress is what a subnet mapping of a load balancer named: an
// Elastic IP (internet-facing) or a private IPv4 address (internal).
type SubnetAddress struct {
	AllocationID string
	PrivateIPv4  string
}

// subnetMappings reads SubnetMappings.member.N into lb (Subnets and
// Addresses), checking the addresses as AWS does; s.mu is held.
func (s *Server) subnetMappings(p params, lb *LoadBalancer) error {
	items := p.structs("SubnetMappings.member", "SubnetId")
	if len(items) == 0 {
		return nil
	}
	if len(lb.Subnets) > 0 {
		return fail("ValidationError", "Subnets and SubnetMappings cannot both be specified")
	}
	lb.Addresses = map[string]SubnetAddress{}
	for _, m := range items {
		id := p.str(m + "SubnetId")
		if lb.SourceNATIPv6 && p.str(m+"SourceNatIpv6Prefix") == "" {
			return fail("ValidationError", "SourceNatIpv6Prefix must be specified for every subnet mapping "+
				"when EnablePrefixForIpv6SourceNat is on")
		}
		a := SubnetAddress{AllocationID: p.str(m + "AllocationId"), PrivateIPv4: p.str(m + "PrivateIPv4Address")}
		switch {
		case a.AllocationID != "" && lb.Scheme != "internet-facing":
			return fail("InvalidConfigurationRequest", "Elastic IPs can only be used with internet-facing load balancers")
		case a.PrivateIPv4 != "" && lb.Scheme != "internal":
			return fail("InvalidConfigurationRequest", "Private IPv4 addresses can only be used with internal load balancers")
		}
		if a.AllocationID != "" {
			addr, ok := s.addresses[a.AllocationID]
			switch {
			case !ok:
				return fail("AllocationIdNotFound", "Elastic IP allocation '%s' not found", a.AllocationID)
			case addr.AssociationID != "":
				return fail("InvalidConfigurationRequest", "Elastic IP '%s' is already associated", a.AllocationID)
			}
		}
		if a.PrivateIPv4 != "" {
			ip, err := netip.ParseAddr(a.PrivateIPv4)
			sn := s.subnets[id]
			if err != nil || sn == nil || !netip.MustParsePrefix(sn.CIDR).Contains(ip) {
				return fail("InvalidConfigurationRequest", "Private IPv4 address '%s' is not in subnet '%s'", a.PrivateIPv4, id)
			}
			if s.usedIPs(id)[ip.String()] {
				return fail("InvalidConfigurationRequest", "Private IPv4 address '%s' is in use", a.PrivateIPv4)
			}
		}
		lb.Subnets = append(lb.Subnets, id)
		if a != (SubnetAddress{}) {
			lb.Addresses[id] = a
		}
	}
	return nil
}

// associateMapped marks the Elastic IPs a new load balancer took as
// associated with it; releaseMapped gives them back when it is deleted.
func (s *Server) associateMapped(lb *LoadBalancer) {
	for _, a := range lb.Addresses {
		if e := s.addresses[a.AllocationID]; e != nil {
			e.AssociationID = s.ec2ID("eipassoc")
		}
	}
}

func (s *Server) releaseMapped(lb *LoadBalancer) {
	for _, a := range lb.Addresses {
		if e := s.addresses[a.AllocationID]; e != nil {
			disassociate(e)
		}
	}
}

func attributeList(attrs map[string]string) *node {
	list := el("Attributes")
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		list.kids = append(list.kids, el("member", tx("Key", k), tx("Value", attrs[k])))
	}
	return list
}

// modifyAttributes applies Attributes.member.N to attrs, refusing unknown
// keys before changing anything.
func modifyAttributes(p params, attrs, known map[string]string) error {
	items := p.structs("Attributes.member", "Key")
	if len(items) == 0 {
		return fail("ValidationError", "Attributes must have at least one member")
	}
	for _, it := range items {
		if _, ok := known[p.str(it+"Key")]; !ok {
			return fail("InvalidConfigurationRequest", "The attribute key '%s' is not recognized", p.str(it+"Key"))
		}
	}
	for _, it := range items {
		attrs[p.str(it+"Key")] = p.str(it + "Value")
	}
	return nil
}

func (s *Server) describeLoadBalancerAttributes(p params) ([]*node, error) {
	lb, err := s.loadBalancer(p.str("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	return []*node{attributeList(lb.attributes())}, nil
}

func (s *Server) modifyLoadBalancerAttributes(p params) ([]*node, error) {
	lb, err := s.loadBalancer(p.str("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	if lb.Attributes == nil {
		lb.Attributes = map[string]string{}
	}
	if err := modifyAttributes(p, lb.Attributes, defaultLBAttributes); err != nil {
		return nil, err
	}
	return []*node{attributeList(lb.attributes())}, nil
}

func (s *Server) describeTargetGroupAttributes(p params) ([]*node, error) {
	tg, err := s.targetGroup(p.str("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	return []*node{attributeList(tg.attributes())}, nil
}

func (s *Server) modifyTargetGroupAttributes(p params) ([]*node, error) {
	tg, err := s.targetGroup(p.str("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	if tg.Attributes == nil {
		tg.Attributes = map[string]string{}
	}
	if err := modifyAttributes(p, tg.Attributes, defaultTGAttributes); err != nil {
		return nil, err
	}
	return []*node{attributeList(tg.attributes())}, nil
}

func (lb *LoadBalancer) attributes() map[string]string {
	out := maps.Clone(defaultLBAttributes)
	maps.Copy(out, lb.Attributes)
	return out
}

func (tg *TargetGroup) attributes() map[string]string {
	out := maps.Clone(defaultTGAttributes)
	maps.Copy(out, tg.Attributes)
	return out
}
