package aws_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// The upstream annotations about an NLB's addresses and attributes are
// honoured; what AWS would refuse is refused before anything is created.
func TestNLBAddressAndAttributeAnnotations(t *testing.T) {
	type lbCheck func(t *testing.T, s awsdouble.State, eips []string)
	for _, tc := range []struct {
		name    string
		svc     func(eips []string) []func(*v1.Service)
		wantErr string
		check   lbCheck
	}{
		{name: "Elastic IPs, one per subnet in order", svc: func(eips []string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"eip-allocations", eips[0]+", "+eips[1])}
		}, check: func(t *testing.T, s awsdouble.State, eips []string) {
			want := map[string]awsdouble.SubnetAddress{"subnet-a": {AllocationID: eips[0]}, "subnet-b": {AllocationID: eips[1]}}
			if got := s.LoadBalancers[0].Addresses; !cmp.Equal(got, want) {
				t.Errorf("subnet mappings %v, want %v", got, want)
			}
			for _, a := range s.Addresses {
				if a.AssociationID == "" {
					t.Errorf("Elastic IP %s not associated with the NLB", a.AllocationID)
				}
			}
		}},
		{name: "Elastic IPs: one per subnet or none", svc: func(eips []string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"eip-allocations", eips[0])}
		}, wantErr: "names 1 Elastic IPs for 2 subnets"},
		{name: "Elastic IPs need an internet-facing NLB", svc: func(eips []string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"internal", "true"), annotate(up+"eip-allocations", eips[0])}
		}, wantErr: "need an internet-facing NLB"},
		{name: "private address in the internal subnet", svc: func([]string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"internal", "true"), annotate(up+"private-ipv4-addresses", "198.18.2.50")}
		}, check: func(t *testing.T, s awsdouble.State, _ []string) {
			if got := s.LoadBalancers[0].Addresses["subnet-i"].PrivateIPv4; got != "198.18.2.50" {
				t.Errorf("private address %q, want 198.18.2.50 in subnet-i", got)
			}
		}},
		{name: "private address outside the subnets", svc: func([]string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"internal", "true"), annotate(up+"private-ipv4-addresses", "198.18.0.50")}
		}, wantErr: "198.18.0.50 is in none of the NLB's subnets"},
		{name: "cross-zone and target group attributes", svc: func([]string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"cross-zone-load-balancing-enabled", "true"),
				annotate(up+"target-group-attributes", "deregistration_delay.timeout_seconds=30, preserve_client_ip.enabled=false")}
		}, check: func(t *testing.T, s awsdouble.State, _ []string) {
			if got := s.LoadBalancers[0].Attributes["load_balancing.cross_zone.enabled"]; got != "true" {
				t.Errorf("cross-zone %q, want true", got)
			}
			for _, tg := range s.TargetGroups {
				want := map[string]string{"deregistration_delay.timeout_seconds": "30", "preserve_client_ip.enabled": "false"}
				if !cmp.Equal(tg.Attributes, want) {
					t.Errorf("group %s attributes %v, want %v", tg.Name, tg.Attributes, want)
				}
			}
		}},
		{name: "unknown target group attribute", svc: func([]string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"target-group-attributes", "stickiness.type=lb_cookie")}
		}, wantErr: `stickiness.type="lb_cookie" is not a valid value`},
		{name: "dualstack address type for an IPv4 Service", svc: func([]string) []func(*v1.Service) {
			return []func(*v1.Service){annotate(up+"ip-address-type", "dualstack")}
		}, check: func(t *testing.T, s awsdouble.State, _ []string) {
			if lb := s.LoadBalancers[0]; lb.IPAddressType != "dualstack" || !lb.SourceNATIPv6 {
				t.Errorf("NLB %s with source NAT %v, want dualstack with it", lb.IPAddressType, lb.SourceNATIPv6)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetProvisioningDescribes(0)
			eips := []string{l.srv.AddElasticIP("198.51.100.10", nil), l.srv.AddElasticIP("198.51.100.11", nil)}
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000401", tc.svc(eips)...)
			rep := &reports{}
			l.b.SetReporter(rep)
			_, err := l.ensure(svc, []*v1.Node{n1})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ensure = %v, want an error containing %q", err, tc.wantErr)
				}
				if s := l.srv.Snapshot(); len(s.LoadBalancers)+len(s.TargetGroups) != 0 {
					t.Errorf("a refused request created %d NLBs and %d groups", len(s.LoadBalancers), len(s.TargetGroups))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rep.got["default/web"]; len(got) != 0 {
				t.Errorf("reported unsupported: %v", got)
			}
			tc.check(t, l.srv.Snapshot(), eips)
			// Idempotent: a second call changes no attribute.
			before := l.srv.Calls("ModifyLoadBalancerAttributes") + l.srv.Calls("ModifyTargetGroupAttributes")
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
			if after := l.srv.Calls("ModifyLoadBalancerAttributes") + l.srv.Calls("ModifyTargetGroupAttributes"); after != before {
				t.Errorf("second Ensure modified attributes (%d calls)", after-before)
			}
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
			for _, a := range l.srv.Snapshot().Addresses {
				if a.AssociationID != "" {
					t.Errorf("Elastic IP %s still associated after the NLB was deleted", a.AllocationID)
				}
			}
		})
	}
}

// Extra security groups join Berth's own on the NLB, follow the annotation
// when it changes, and stay within the operator's list.
func TestNLBExtraSecurityGroups(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	extra := l.srv.AddSecurityGroup("office", "vpc-1", nil)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000402", annotate(up+"extra-security-groups", extra))
	if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	lb := l.srv.Snapshot().LoadBalancers[0]
	if len(lb.SecurityGroups) != 2 || !slices.Contains(lb.SecurityGroups, extra) {
		t.Fatalf("NLB groups %v, want Berth's and %s", lb.SecurityGroups, extra)
	}
	own := slices.DeleteFunc(slices.Clone(lb.SecurityGroups), func(g string) bool { return g == extra })
	delete(svc.Annotations, up+"extra-security-groups")
	if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	if got := l.srv.Snapshot().LoadBalancers[0].SecurityGroups; !cmp.Equal(got, own) {
		t.Errorf("after the annotation went: groups %v, want Berth's %v only", got, own)
	}

	limited := newLab(t, func(c *aws.Config) { c.NLB.AllowedSecurityGroups = []string{"sg-0allowed"} })
	other := service("other", "0c4b7f3e-aaaa-bbbb-cccc-000000000403", annotate(up+"extra-security-groups", extra))
	if _, err := limited.b.Ensure(limited.ctx, other, nil); err == nil || !strings.Contains(err.Error(), "aws.nlb.allowedSecurityGroups") {
		t.Errorf("a group outside the operator's list: %v", err)
	}
}
