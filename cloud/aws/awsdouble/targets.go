package awsdouble

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// defaultHealthCheck is what AWS gives a network load balancer's target
// group when the request sets no health check parameter.
func defaultHealthCheck() HealthCheck {
	return HealthCheck{Enabled: true, Protocol: "TCP", Port: "traffic-port", IntervalSeconds: 30,
		TimeoutSeconds: 10, HealthyThreshold: 5, UnhealthyThreshold: 2}
}

// healthCheckSettings applies the HealthCheck* parameters present in p to hc.
func healthCheckSettings(p params, hc *HealthCheck) error {
	if p.has("HealthCheckEnabled") {
		hc.Enabled = p.str("HealthCheckEnabled") == "true"
	}
	hc.Protocol = orDefault(p.str("HealthCheckProtocol"), hc.Protocol)
	hc.Port = orDefault(p.str("HealthCheckPort"), hc.Port)
	hc.Path = orDefault(p.str("HealthCheckPath"), hc.Path)
	if hc.Path == "" && oneOf(hc.Protocol, "HTTP", "HTTPS") {
		hc.Path = "/"
	}
	ints := []struct {
		key      string
		v        *int32
		min, max int32
	}{
		{"HealthCheckIntervalSeconds", &hc.IntervalSeconds, 5, 300},
		{"HealthCheckTimeoutSeconds", &hc.TimeoutSeconds, 2, 120},
		{"HealthyThresholdCount", &hc.HealthyThreshold, 2, 10},
		{"UnhealthyThresholdCount", &hc.UnhealthyThreshold, 2, 10},
	}
	for _, f := range ints {
		v, err := p.int32(f.key, *f.v)
		if err != nil {
			return err
		}
		if v < f.min || v > f.max {
			return fail("ValidationError", "%s must be between %d and %d, not %d", f.key, f.min, f.max, v)
		}
		*f.v = v
	}
	if port, err := strconv.Atoi(hc.Port); hc.Port != "traffic-port" && (err != nil || port < 1 || port > 65535) {
		return fail("ValidationError", "HealthCheckPort '%s' is not valid", hc.Port)
	}
	if !oneOf(hc.Protocol, "TCP", "HTTP", "HTTPS") {
		return fail("ValidationError", "HealthCheckProtocol '%s' is not valid", hc.Protocol)
	}
	return nil
}

func (s *Server) createTargetGroup(p params) ([]*node, error) {
	name := p.str("Name")
	if err := validName("Target group", name); err != nil {
		return nil, err
	}
	tg := &TargetGroup{Name: name, Protocol: p.str("Protocol"), VPCID: p.str("VpcId"),
		TargetType: orDefault(p.str("TargetType"), "instance"), IPAddressType: orDefault(p.str("IpAddressType"), "ipv4"),
		HealthCheck: defaultHealthCheck()}
	port, err := p.int32("Port", 0)
	if err != nil {
		return nil, err
	}
	tg.Port = port
	switch {
	case !oneOf(tg.Protocol, "TCP", "UDP", "TCP_UDP", "TLS"):
		return nil, fail("ValidationError", "Protocol '%s' is not valid for a network load balancer", tg.Protocol)
	case tg.Port < 1 || tg.Port > 65535:
		return nil, fail("ValidationError", "Port %d is not between 1 and 65535", tg.Port)
	case !oneOf(tg.TargetType, "instance", "ip"):
		return nil, fail("ValidationError", "awsdouble supports only TargetType instance or ip, not '%s'", tg.TargetType)
	case !oneOf(tg.IPAddressType, "ipv4", "ipv6"):
		return nil, fail("ValidationError", "IpAddressType '%s' is not valid", tg.IPAddressType)
	case !slices.ContainsFunc(slices.Collect(maps.Values(s.subnets)), func(sn *Subnet) bool { return sn.VPCID == tg.VPCID }):
		return nil, fail("ValidationError", "The VPC ID '%s' is not found", tg.VPCID)
	}
	if err := healthCheckSettings(p, &tg.HealthCheck); err != nil {
		return nil, err
	}
	if tg.Tags, err = p.tags("Tags.member"); err != nil {
		return nil, err
	}
	if old := s.tgByName(name); old != nil {
		if old.Protocol == tg.Protocol && old.Port == tg.Port && old.VPCID == tg.VPCID &&
			old.TargetType == tg.TargetType && old.IPAddressType == tg.IPAddressType && old.HealthCheck == tg.HealthCheck {
			return []*node{el("TargetGroups", s.tgMember(old))}, nil
		}
		return nil, fail("DuplicateTargetGroupName", "A target group with the same name '%s' exists, "+
			"but with different settings", name)
	}
	tg.ARN, _ = s.elbARN("targetgroup/" + name)
	s.tgs[tg.ARN] = tg
	if s.elbDelay > 0 {
		s.unseen[tg.ARN] = s.elbDelay
	}
	s.tagsChanged(tg.ARN, nil)
	return []*node{el("TargetGroups", s.tgMember(tg))}, nil
}

func (s *Server) tgByName(name string) *TargetGroup {
	for _, tg := range s.tgs {
		if tg.Name == name {
			return tg
		}
	}
	return nil
}

func (s *Server) tgMember(tg *TargetGroup) *node {
	hc := tg.HealthCheck
	return el("member", tx("TargetGroupArn", tg.ARN), tx("TargetGroupName", tg.Name), tx("Protocol", tg.Protocol),
		tx("Port", itoa(tg.Port)), tx("VpcId", tg.VPCID), tx("TargetType", tg.TargetType),
		tx("IpAddressType", tg.IPAddressType), tx("HealthCheckEnabled", strconv.FormatBool(hc.Enabled)),
		tx("HealthCheckProtocol", hc.Protocol), tx("HealthCheckPort", hc.Port), opt("HealthCheckPath", hc.Path),
		tx("HealthCheckIntervalSeconds", itoa(hc.IntervalSeconds)), tx("HealthCheckTimeoutSeconds", itoa(hc.TimeoutSeconds)),
		tx("HealthyThresholdCount", itoa(hc.HealthyThreshold)), tx("UnhealthyThresholdCount", itoa(hc.UnhealthyThreshold)),
		members("LoadBalancerArns", s.tgLoadBalancers(tg.ARN)))
}

func (s *Server) targetGroup(arn string) (*TargetGroup, error) {
	tg, ok := s.tgs[arn]
	if !ok {
		return nil, fail("TargetGroupNotFound", "Target group '%s' not found", arn)
	}
	return tg, nil
}

func (s *Server) describeTargetGroups(p params) ([]*node, error) {
	lbARN, arns, names := p.str("LoadBalancerArn"), p.list("TargetGroupArns.member"), p.list("Names.member")
	if (lbARN != "" && len(arns)+len(names) > 0) || (len(arns) > 0 && len(names) > 0) {
		return nil, fail("ValidationError", "give at most one of LoadBalancerArn, TargetGroupArns and Names")
	}
	if _, err := s.loadBalancer(lbARN); lbARN != "" && err != nil {
		return nil, err
	}
	var out []*TargetGroup
	for _, arn := range slices.Sorted(maps.Keys(s.tgs)) {
		if lbARN == "" && len(arns)+len(names) == 0 || lbARN != "" && slices.Contains(s.tgLoadBalancers(arn), lbARN) {
			if !s.notYetSeen(arn) {
				out = append(out, s.tgs[arn])
			}
		}
	}
	for _, arn := range arns {
		tg, err := s.targetGroup(arn)
		if err == nil && s.notYetSeen(arn) {
			err = fail("TargetGroupNotFound", "Target group '%s' not found", arn)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, tg)
	}
	for _, name := range names {
		tg := s.tgByName(name)
		if tg == nil || s.notYetSeen(tg.ARN) {
			return nil, fail("TargetGroupNotFound", "One or more target groups not found: '%s'", name)
		}
		out = append(out, tg)
	}
	list := el("TargetGroups")
	for _, tg := range out {
		list.kids = append(list.kids, s.tgMember(tg))
	}
	return []*node{list}, nil
}

func (s *Server) modifyTargetGroup(p params) ([]*node, error) {
	tg, err := s.targetGroup(p.str("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	hc := tg.HealthCheck
	if err := healthCheckSettings(p, &hc); err != nil {
		return nil, err
	}
	tg.HealthCheck = hc
	return []*node{el("TargetGroups", s.tgMember(tg))}, nil
}

// deleteTargetGroup refuses a group a listener forwards to; deleting a
// missing group succeeds, as in AWS.
func (s *Server) deleteTargetGroup(p params) ([]*node, error) {
	arn := p.str("TargetGroupArn")
	if lbs := s.tgLoadBalancers(arn); len(lbs) > 0 {
		return nil, fail("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	if n := s.inUse[arn]; n > 0 {
		s.inUse[arn] = n - 1
		return nil, fail("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	delete(s.tgs, arn)
	delete(s.inUse, arn)
	return nil, nil
}

// targets reads Targets.member.N, defaulting ports to the group's.
func (s *Server) targets(p params, tg *TargetGroup) ([]Target, error) {
	var out []Target
	for _, item := range p.structs("Targets.member", "Id") {
		port, err := p.int32(item+"Port", tg.Port)
		if err != nil {
			return nil, err
		}
		out = append(out, Target{ID: p.str(item + "Id"), Port: port})
	}
	if len(out) == 0 {
		return nil, fail("ValidationError", "Targets must contain at least one target")
	}
	return out, nil
}

// groupTargets reads the TargetGroupArn and Targets parameters.
func (s *Server) groupTargets(p params) (*TargetGroup, []Target, error) {
	tg, err := s.targetGroup(p.str("TargetGroupArn"))
	if err != nil {
		return nil, nil, err
	}
	targets, err := s.targets(p, tg)
	return tg, targets, err
}

// registerTargets accepts running instances of the group's VPC (with a
// primary IPv6 address for an IPv6 group), or addresses of the group's
// family in the VPC's subnets, as ELB does; one refused target refuses
// the call.
func (s *Server) registerTargets(p params) ([]*node, error) {
	tg, targets, err := s.groupTargets(p)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if err := s.registrable(tg, t.ID); err != nil {
			return nil, err
		}
	}
	for _, t := range targets {
		delete(tg.Draining, t)
		if !slices.Contains(tg.Targets, t) {
			tg.Targets = append(tg.Targets, t)
		}
	}
	return nil, nil
}

// registrable returns the error ELB gives for registering id in tg.
func (s *Server) registrable(tg *TargetGroup, id string) error {
	if tg.TargetType == "ip" {
		return s.registrableIP(tg, id)
	}
	inst, ok := s.instances[id]
	if !ok || inst.State != "running" || s.subnets[inst.SubnetID].VPCID != tg.VPCID {
		return fail("InvalidTarget", "The following targets are not in a running state or not in the "+
			"target group's VPC and cannot be registered: '%s'", id)
	}
	if tg.IPAddressType == "ipv6" && !s.enis[inst.NetworkInterfaceID].PrimaryIPv6 {
		// As ELB words it (aws-load-balancer-controller issue 3692).
		return fail("InvalidTarget", "The following targets cannot be used with this IPv6 target group "+
			"because of missing primary IPv6 addresses: '%s'", id)
	}
	return nil
}

// registrableIP checks an ip target: an address of the group's family
// (ELB: "The IP address '…' is not a valid IPv4 address") from one of the
// VPC's subnets (IPv4 targets may also be private addresses outside it,
// which the double does not model).
func (s *Server) registrableIP(tg *TargetGroup, id string) error {
	ip, err := netip.ParseAddr(id)
	family := map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}[tg.IPAddressType]
	if err != nil || ip.Is4() != (tg.IPAddressType == "ipv4") || ip.Is4In6() {
		return fail("ValidationError", "The IP address '%s' is not a valid %s address", id, family)
	}
	for _, sn := range s.subnets {
		cidr := sn.CIDR
		if ip.Is6() {
			cidr = sn.IPv6CIDR
		}
		if sn.VPCID == tg.VPCID && cidr != "" && netip.MustParsePrefix(cidr).Contains(ip) {
			return nil
		}
	}
	return fail("InvalidTarget", "The following targets are not in the target group's VPC '%s': '%s'", tg.VPCID, id)
}

// instanceOfIP returns the instance whose network interface has ip, or nil.
func (s *Server) instanceOfIP(ip string) *Instance {
	for _, eni := range s.enis {
		if slices.Contains(eni.PrivateIPs, ip) || slices.Contains(eni.IPv6, ip) {
			return s.instances[eni.InstanceID]
		}
	}
	return nil
}

// deregisterTargets ignores targets that are not registered.
func (s *Server) deregisterTargets(p params) ([]*node, error) {
	tg, targets, err := s.groupTargets(p)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if slices.Contains(tg.Targets, t) && s.drainDescribes > 0 {
			if tg.Draining == nil {
				tg.Draining = map[Target]int{}
			}
			tg.Draining[t] = s.drainDescribes
		}
	}
	tg.Targets = slices.DeleteFunc(tg.Targets, func(t Target) bool { return slices.Contains(targets, t) })
	return nil, nil
}

// describeTargetHealth reports running instances (and the addresses of
// running instances) healthy and others unused.
func (s *Server) describeTargetHealth(p params) ([]*node, error) {
	tg, err := s.targetGroup(p.str("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	list := el("TargetHealthDescriptions")
	for _, t := range tg.Targets {
		health := el("TargetHealth", tx("State", "healthy"))
		inst := s.instances[t.ID]
		if tg.TargetType == "ip" {
			inst = s.instanceOfIP(t.ID)
		}
		if inst == nil || inst.State != "running" {
			health = el("TargetHealth", tx("State", "unused"), tx("Reason", "Target.InvalidState"),
				tx("Description", "Target is in the stopped state"))
		}
		port := tg.HealthCheck.Port
		if port == "traffic-port" {
			port = itoa(t.Port)
		}
		list.kids = append(list.kids, el("member", el("Target", tx("Id", t.ID), tx("Port", itoa(t.Port))),
			tx("HealthCheckPort", port), health))
	}
	for _, t := range slices.SortedFunc(maps.Keys(tg.Draining), func(a, b Target) int { return strings.Compare(a.ID, b.ID) }) {
		list.kids = append(list.kids, el("member", el("Target", tx("Id", t.ID), tx("Port", itoa(t.Port))),
			el("TargetHealth", tx("State", "draining"), tx("Reason", "Target.DeregistrationInProgress"),
				tx("Description", "Target deregistration is in progress"))))
		if tg.Draining[t]--; tg.Draining[t] <= 0 {
			delete(tg.Draining, t)
		}
	}
	return []*node{list}, nil
}
