package aws

import (
	"fmt"
	"slices"
	"strings"
)

// Modes of the AWS backend.
const (
	// ModeNLB gives each Service a Network Load Balancer.
	ModeNLB = "nlb"
	// ModeEIP gives each Service an Elastic IP mapped to one node.
	ModeEIP = "eip"
)

// Config is the "aws" section of berth-ccm's cloud config.
type Config struct {
	// Region, when empty, comes from the SDK's default chain (AWS_REGION,
	// shared config, instance metadata).
	Region string `json:"region,omitempty"`
	// ClusterName is written into the berth.dev/cluster tag of every
	// resource and used to discover subnets tagged
	// kubernetes.io/cluster/<ClusterName>. Required.
	ClusterName string `json:"clusterName"`
	// DefaultMode is "nlb" (default) or "eip"; a Service overrides it with
	// the berth.dev/aws-mode annotation.
	DefaultMode string `json:"defaultMode,omitempty"`
	// Endpoints override the service endpoints (tests, VPC endpoints).
	Endpoints Endpoints `json:"endpoints,omitempty"`
	// MaxAttempts bounds the SDK's attempts per call, throttling included
	// (default 10).
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// NLB configures nlb mode.
	NLB NLBConfig `json:"nlb,omitempty"`
	// EIP configures eip mode.
	EIP EIPConfig `json:"eip,omitempty"`
}

// Endpoints are service endpoint overrides; empty means the SDK's default.
type Endpoints struct {
	EC2   string `json:"ec2,omitempty"`
	ELBv2 string `json:"elbv2,omitempty"`
}

// NLBConfig configures nlb mode.
type NLBConfig struct {
	// Scheme is the scheme of Services that ask for none:
	// "internet-facing" (default, as the upstream AWS provider) or
	// "internal".
	Scheme string `json:"scheme,omitempty"`
	// AllowedSchemes are the schemes a Service may ask for with the
	// aws-load-balancer-internal or -scheme annotations; a Service asking
	// for another is refused. Default: both, as the upstream provider.
	// ["internal"] keeps every load balancer (and Elastic IP mode, which
	// is always public) off the internet.
	AllowedSchemes []string `json:"allowedSchemes,omitempty"`
	// AllowedSubnets, when set, are the only subnets (IDs or Name tags) a
	// Service may name in the aws-load-balancer-subnets annotation.
	// Default: any subnet, as the upstream provider.
	AllowedSubnets []string `json:"allowedSubnets,omitempty"`
	// AllowedEIPAllocations, when set, are the only Elastic IP allocations
	// a Service may name in the aws-load-balancer-eip-allocations
	// annotation. Default: any, as the upstream provider.
	AllowedEIPAllocations []string `json:"allowedEIPAllocations,omitempty"`
	// AllowedSecurityGroups, when set, are the only security groups a
	// Service may add to its NLB with the
	// aws-load-balancer-extra-security-groups annotation. Default: any,
	// as the upstream provider.
	AllowedSecurityGroups []string `json:"allowedSecurityGroups,omitempty"`
	// Subnets, when set, are used instead of discovery by tag.
	Subnets []string `json:"subnets,omitempty"`
	// UDPHealthCheckPort is the node port that the health checks of UDP
	// target groups use with externalTrafficPolicy Cluster (a UDP port
	// cannot be checked itself): HTTP GET /healthz. Default 10256,
	// kube-proxy's health server.
	UDPHealthCheckPort int32 `json:"udpHealthCheckPort,omitempty"`
}

// EIPConfig configures eip mode.
type EIPConfig struct {
	// AllocationIDs, when set, is the only source of Elastic IPs: Berth
	// takes a free one from the list and gives it back, never releasing
	// it. Otherwise Berth allocates a new Elastic IP per Service (from
	// PublicIPv4Pool when set) and releases it when the Service goes.
	AllocationIDs []string `json:"allocationIDs,omitempty"`
	// PublicIPv4Pool is a BYOIP pool ID to allocate from.
	PublicIPv4Pool string `json:"publicIPv4Pool,omitempty"`
}

// Defaults returns the configuration with defaults filled in, or an error
// naming the first invalid field.
func (c Config) Defaults() (Config, error) {
	if strings.TrimSpace(c.ClusterName) == "" {
		return c, fmt.Errorf("aws.clusterName is required: it is written into the tags that prove which resources Berth owns")
	}
	if c.DefaultMode == "" {
		c.DefaultMode = ModeNLB
	}
	if c.DefaultMode != ModeNLB && c.DefaultMode != ModeEIP {
		return c, fmt.Errorf("aws.defaultMode %q: want %q or %q", c.DefaultMode, ModeNLB, ModeEIP)
	}
	if c.NLB.Scheme == "" {
		c.NLB.Scheme = schemeInternetFacing
		if len(c.NLB.AllowedSchemes) > 0 && !slices.Contains(c.NLB.AllowedSchemes, schemeInternetFacing) {
			c.NLB.Scheme = schemeInternal
		}
	}
	if !validScheme(c.NLB.Scheme) {
		return c, fmt.Errorf("aws.nlb.scheme %q: want %q or %q", c.NLB.Scheme, schemeInternetFacing, schemeInternal)
	}
	c.NLB.AllowedSchemes = slices.Clone(c.NLB.AllowedSchemes)
	if len(c.NLB.AllowedSchemes) == 0 {
		c.NLB.AllowedSchemes = []string{schemeInternal, schemeInternetFacing}
	}
	for _, s := range c.NLB.AllowedSchemes {
		if !validScheme(s) {
			return c, fmt.Errorf("aws.nlb.allowedSchemes: %q: want %q or %q", s, schemeInternetFacing, schemeInternal)
		}
	}
	if !slices.Contains(c.NLB.AllowedSchemes, c.NLB.Scheme) {
		return c, fmt.Errorf("aws.nlb.scheme %q is not among aws.nlb.allowedSchemes %v", c.NLB.Scheme, c.NLB.AllowedSchemes)
	}
	if c.NLB.UDPHealthCheckPort == 0 {
		c.NLB.UDPHealthCheckPort = 10256
	}
	if c.NLB.UDPHealthCheckPort < 1 || c.NLB.UDPHealthCheckPort > 65535 {
		return c, fmt.Errorf("aws.nlb.udpHealthCheckPort %d: want a port number", c.NLB.UDPHealthCheckPort)
	}
	c.NLB.AllowedSubnets = slices.Clone(c.NLB.AllowedSubnets)
	if len(c.EIP.AllocationIDs) > 0 && c.EIP.PublicIPv4Pool != "" {
		return c, fmt.Errorf("aws.eip: set allocationIDs or publicIPv4Pool, not both")
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 10
	}
	if c.MaxAttempts < 1 {
		return c, fmt.Errorf("aws.maxAttempts %d: want at least 1", c.MaxAttempts)
	}
	c.NLB.Subnets = slices.Clone(c.NLB.Subnets)
	c.EIP.AllocationIDs = slices.Clone(c.EIP.AllocationIDs)
	return c, nil
}

const (
	schemeInternetFacing = "internet-facing"
	schemeInternal       = "internal"
)

func validScheme(s string) bool { return s == schemeInternetFacing || s == schemeInternal }
