package awsdouble

import "fmt"

// ipv4PerENI is the number of private IPv4 addresses, the primary
// included, one network interface of an instance type may have, from
// EC2's table of IP addresses per network interface per instance type
// (a sample of common types).
var ipv4PerENI = map[string]int{
	"t3.nano": 2, "t3.micro": 2, "t3.small": 4, "t3.medium": 6, "t3.large": 12, "t3.xlarge": 15,
	"m5.large": 10, "m5.xlarge": 15, "m5.2xlarge": 15, "m5.4xlarge": 30,
	"c5.large": 10, "c5.xlarge": 15, "r5.large": 10, "m7i.large": 10,
}

// SetInstanceType sets an instance's type; its interfaces then hold at most
// as many private IPv4 addresses as EC2 allows that type (AssignPrivateIpAddresses
// beyond it fails with PrivateIpAddressLimitExceeded). It panics on an
// unknown instance or a type the double has no figure for.
func (s *Server) SetInstanceType(id, instanceType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if _, known := ipv4PerENI[instanceType]; !ok || !known {
		panic(fmt.Sprintf("awsdouble: SetInstanceType(%q, %q): unknown instance or type", id, instanceType))
	}
	inst.Type = instanceType
}

// addressesPerENI is the address limit of an interface: its instance type's,
// else the SetPrivateIPLimit default; s.mu is held.
func (s *Server) addressesPerENI(eni *NetworkInterface) int {
	if inst := s.instances[eni.InstanceID]; inst != nil {
		if n, ok := ipv4PerENI[inst.Type]; ok {
			return n
		}
	}
	return s.privateIPLimit
}
