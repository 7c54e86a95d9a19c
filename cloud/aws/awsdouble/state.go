package awsdouble

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// State is a copy of everything a Server holds, each list sorted by ID or
// ARN. Changing it does not change the Server.
type State struct {
	Subnets           []Subnet
	Instances         []Instance
	NetworkInterfaces []NetworkInterface
	Addresses         []Address
	LoadBalancers     []LoadBalancer
	TargetGroups      []TargetGroup
	Listeners         []Listener
	SecurityGroups    []SecurityGroup
}

// Subnet is an EC2 subnet, added with Server.AddSubnet.
type Subnet struct {
	ID               string
	VPCID            string
	AvailabilityZone string
	CIDR             string
	IPv6CIDR         string // "" without one (SetSubnetIPv6)
	Tags             map[string]string
}

// Instance is an EC2 instance with one network interface, added with
// Server.AddInstance.
type Instance struct {
	ID                 string
	Type               string // "" or an instance type (SetInstanceType)
	SubnetID           string
	State              string // "running", "stopped", ...
	NetworkInterfaceID string
	SecurityGroups     []string
	Tags               map[string]string
}

// NetworkInterface is an instance's network interface.
type NetworkInterface struct {
	ID           string
	SubnetID     string
	InstanceID   string
	AttachmentID string
	PrivateIPs   []string // the primary address first
	IPv6         []string // from its subnet's IPv6 CIDR (AddInstanceIPv6)
	// PrimaryIPv6 is true when the first of IPv6 is the interface's
	// primary IPv6 address, which an instance needs to be a target of an
	// IPv6 target group by instance ID.
	PrimaryIPv6 bool
}

// Address is an Elastic IP allocation. The association fields are empty
// while it is not associated.
type Address struct {
	AllocationID       string
	PublicIP           string
	Pool               string // "amazon" or a pool added with AddPublicIPv4Pool
	AssociationID      string
	NetworkInterfaceID string
	PrivateIP          string
	InstanceID         string
	Tags               map[string]string
}

// LoadBalancer is an ELBv2 network load balancer.
type LoadBalancer struct {
	ARN           string
	Name          string
	DNSName       string
	Type          string // "network"
	Scheme        string // "internet-facing" or "internal"
	IPAddressType string // "ipv4" or "dualstack"
	VPCID         string
	State         string // "provisioning" or "active"
	Subnets       []string
	// SecurityGroups are set at creation only: a network load balancer
	// created without any can never get one.
	SecurityGroups []string
	// SourceNATIPv6 is EnablePrefixForIpv6SourceNat, set at creation:
	// a dualstack NLB needs it for UDP listeners.
	SourceNATIPv6 bool
	// Addresses are the subnet mappings' Elastic IPs or private
	// addresses, by subnet.
	Addresses map[string]SubnetAddress
	// Attributes are those changed from the defaults.
	Attributes map[string]string
	Tags       map[string]string
}

// TargetGroup is an ELBv2 target group of instances (TargetType
// "instance") or of addresses ("ip").
type TargetGroup struct {
	ARN           string
	Name          string
	Protocol      string
	Port          int32
	VPCID         string
	TargetType    string
	IPAddressType string
	HealthCheck   HealthCheck
	Targets       []Target
	// Draining are deregistered targets still listed as draining, with
	// the DescribeTargetHealth responses left until they are gone.
	Draining map[Target]int
	// LoadBalancerARNs are the load balancers with a listener forwarding to
	// the group (at most one).
	LoadBalancerARNs []string
	// Attributes are those changed from the defaults.
	Attributes map[string]string
	Tags       map[string]string
}

// HealthCheck is a target group's health check settings.
type HealthCheck struct {
	Enabled            bool
	Protocol           string
	Port               string // "traffic-port" or a port number
	Path               string
	IntervalSeconds    int32
	TimeoutSeconds     int32
	HealthyThreshold   int32
	UnhealthyThreshold int32
}

// Target is a registered target: an instance ID or an address, and a
// port.
type Target struct {
	ID   string
	Port int32
}

// Listener is an ELBv2 listener.
type Listener struct {
	ARN             string
	LoadBalancerARN string
	Protocol        string
	Port            int32
	Actions         []Action
	Tags            map[string]string
}

// Action is a listener's default action.
type Action struct {
	Type           string // "forward"
	TargetGroupARN string
}

// instanceStateCode returns the code of an EC2 instance state name.
func instanceStateCode(name string) (int, bool) {
	codes := map[string]int{"pending": 0, "running": 16, "shutting-down": 32,
		"terminated": 48, "stopping": 64, "stopped": 80}
	c, ok := codes[name]
	return c, ok
}

// AddSubnet adds a subnet with an IPv4 CIDR. It panics on a bad CIDR.
func (s *Server) AddSubnet(id, vpcID, az, cidr string, tags map[string]string) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		panic(fmt.Sprintf("awsdouble: AddSubnet %s: bad IPv4 CIDR %q", id, cidr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subnets[id] = &Subnet{ID: id, VPCID: vpcID, AvailabilityZone: az, CIDR: p.Masked().String(),
		Tags: cloneTags(tags)}
	s.mainTable(vpcID)
}

// AddInstance adds a running instance with one network interface whose
// primary private address is privateIP, and returns the interface's ID. It
// panics if the subnet is unknown or the address is not free in it.
func (s *Server) AddInstance(id, subnetID, privateIP string) (eniID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.subnets[subnetID]
	if !ok {
		panic(fmt.Sprintf("awsdouble: AddInstance %s: unknown subnet %q", id, subnetID))
	}
	ip, err := netip.ParseAddr(privateIP)
	if err != nil || !netip.MustParsePrefix(sn.CIDR).Contains(ip) || s.usedIPs(subnetID)[ip.String()] {
		panic(fmt.Sprintf("awsdouble: AddInstance %s: %q is not a free address of %s", id, privateIP, sn.CIDR))
	}
	eni := &NetworkInterface{ID: s.ec2ID("eni"), SubnetID: subnetID, InstanceID: id,
		AttachmentID: s.ec2ID("eni-attach"), PrivateIPs: []string{ip.String()}}
	s.enis[eni.ID] = eni
	s.instances[id] = &Instance{ID: id, SubnetID: subnetID, State: "running", NetworkInterfaceID: eni.ID,
		Tags: map[string]string{}}
	return eni.ID
}

// AddInstanceIPv6 gives an instance's network interface an IPv6 address
// from its subnet's IPv6 CIDR; primary makes the interface's first IPv6
// address its primary IPv6 address. It panics on an unknown instance or
// an address outside the subnet's IPv6 CIDR.
func (s *Server) AddInstanceIPv6(id, addr string, primary bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	ip, err := netip.ParseAddr(addr)
	if !ok || err != nil || s.subnets[inst.SubnetID].IPv6CIDR == "" ||
		!netip.MustParsePrefix(s.subnets[inst.SubnetID].IPv6CIDR).Contains(ip) {
		panic(fmt.Sprintf("awsdouble: AddInstanceIPv6(%q, %q): unknown instance or not an address of its subnet's IPv6 CIDR", id, addr))
	}
	eni := s.enis[inst.NetworkInterfaceID]
	eni.IPv6 = append(eni.IPv6, ip.String())
	eni.PrimaryIPv6 = eni.PrimaryIPv6 || primary
}

// SetInstanceState sets an instance's state name ("running", "stopped",
// "terminated", ...). It panics on an unknown instance or state.
func (s *Server) SetInstanceState(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if _, valid := instanceStateCode(name); !ok || !valid {
		panic(fmt.Sprintf("awsdouble: SetInstanceState(%q, %q): unknown instance or state", id, name))
	}
	inst.State = name
}

// SetSubnetTags adds tags to a subnet (for example a Name). It panics on
// an unknown subnet.
func (s *Server) SetSubnetTags(id string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.subnets[id]
	if !ok {
		panic(fmt.Sprintf("awsdouble: SetSubnetTags(%q): unknown subnet", id))
	}
	if sn.Tags == nil {
		sn.Tags = map[string]string{}
	}
	maps.Copy(sn.Tags, tags)
}

// SetSubnetIPv6 associates an IPv6 CIDR with a subnet. It panics on an
// unknown subnet or a bad CIDR.
func (s *Server) SetSubnetIPv6(id, cidr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.subnets[id]
	p, err := netip.ParsePrefix(cidr)
	if !ok || err != nil || !p.Addr().Is6() {
		panic(fmt.Sprintf("awsdouble: SetSubnetIPv6(%q, %q): unknown subnet or bad CIDR", id, cidr))
	}
	sn.IPv6CIDR = p.Masked().String()
}

// TagInstance sets tags on an instance (for example the cluster tag
// kubernetes.io/cluster/<name>). It panics on an unknown instance.
func (s *Server) TagInstance(id string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok {
		panic(fmt.Sprintf("awsdouble: TagInstance(%q): unknown instance", id))
	}
	maps.Copy(inst.Tags, tags)
}

// AddElasticIP adds an existing, unassociated Elastic IP allocation of
// publicIP and returns its allocation ID. It counts against the address
// limit. It panics on a bad or already allocated address.
func (s *Server) AddElasticIP(publicIP string, tags map[string]string) (allocationID string) {
	ip, err := netip.ParseAddr(publicIP)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.allocated()[ip.String()] {
		panic(fmt.Sprintf("awsdouble: AddElasticIP: bad or allocated address %q", publicIP))
	}
	pool := "amazon"
	for id, p := range s.pools {
		if p.Contains(ip) {
			pool = id
		}
	}
	a := &Address{AllocationID: s.ec2ID("eipalloc"), PublicIP: ip.String(), Pool: pool, Tags: cloneTags(tags)}
	s.addresses[a.AllocationID] = a
	return a.AllocationID
}

// AddPublicIPv4Pool registers a public IPv4 pool (a BYOIP pool such as
// "ipv4pool-ec2-0123") that AllocateAddress may name in PublicIpv4Pool. The
// first and last addresses of cidr are never handed out.
func (s *Server) AddPublicIPv4Pool(poolID, cidr string) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		panic(fmt.Sprintf("awsdouble: AddPublicIPv4Pool %s: bad IPv4 CIDR %q", poolID, cidr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools[poolID] = p.Masked()
}

// Snapshot returns a copy of everything the Server holds.
func (s *Server) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st State
	for _, v := range sortedValues(s.subnets) {
		v.Tags = cloneTags(v.Tags)
		st.Subnets = append(st.Subnets, v)
	}
	for _, v := range sortedValues(s.instances) {
		v.Tags, v.SecurityGroups = cloneTags(v.Tags), slices.Clone(v.SecurityGroups)
		st.Instances = append(st.Instances, v)
	}
	for _, v := range sortedValues(s.enis) {
		v.PrivateIPs = slices.Clone(v.PrivateIPs)
		st.NetworkInterfaces = append(st.NetworkInterfaces, v)
	}
	for _, v := range sortedValues(s.addresses) {
		v.Tags = cloneTags(v.Tags)
		st.Addresses = append(st.Addresses, v)
	}
	for _, v := range sortedValues(s.lbs) {
		v.Subnets, v.Tags, v.SecurityGroups = slices.Clone(v.Subnets), cloneTags(v.Tags), slices.Clone(v.SecurityGroups)
		v.Addresses, v.Attributes = maps.Clone(v.Addresses), maps.Clone(v.Attributes)
		st.LoadBalancers = append(st.LoadBalancers, v)
	}
	for _, v := range sortedValues(s.tgs) {
		v.Targets, v.Tags, v.LoadBalancerARNs = slices.Clone(v.Targets), cloneTags(v.Tags), s.tgLoadBalancers(v.ARN)
		v.Draining, v.Attributes = maps.Clone(v.Draining), maps.Clone(v.Attributes)
		st.TargetGroups = append(st.TargetGroups, v)
	}
	for _, v := range sortedValues(s.sgs) {
		v.Ingress, v.Tags = slices.Clone(v.Ingress), cloneTags(v.Tags)
		st.SecurityGroups = append(st.SecurityGroups, v)
	}
	for _, v := range sortedValues(s.listeners) {
		v.Actions, v.Tags = slices.Clone(v.Actions), cloneTags(v.Tags)
		st.Listeners = append(st.Listeners, v)
	}
	return st
}

// sortedValues returns shallow copies of m's values sorted by key.
func sortedValues[T any](m map[string]*T) []T {
	out := make([]T, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[k])
	}
	return out
}

// cloneTags copies tags, never returning nil so that handlers can write to it.
func cloneTags(tags map[string]string) map[string]string {
	out := make(map[string]string, len(tags))
	maps.Copy(out, tags)
	return out
}

// usedIPs is the set of private addresses in use in a subnet.
func (s *Server) usedIPs(subnetID string) map[string]bool {
	used := map[string]bool{}
	for _, eni := range s.enis {
		if eni.SubnetID == subnetID {
			for _, ip := range eni.PrivateIPs {
				used[ip] = true
			}
		}
	}
	return used
}

// allocated is the set of public addresses allocated as Elastic IPs.
func (s *Server) allocated() map[string]bool {
	used := map[string]bool{}
	for _, a := range s.addresses {
		used[a.PublicIP] = true
	}
	return used
}

// tgLoadBalancers lists the load balancers whose listeners forward to a
// target group.
func (s *Server) tgLoadBalancers(tgARN string) []string {
	var out []string
	for _, l := range sortedValues(s.listeners) {
		for _, a := range l.Actions {
			if a.TargetGroupARN == tgARN && !slices.Contains(out, l.LoadBalancerARN) {
				out = append(out, l.LoadBalancerARN)
			}
		}
	}
	return out
}
