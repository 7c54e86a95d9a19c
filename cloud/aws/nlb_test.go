package aws_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// ensureActive calls Ensure until the NLB is active, as the service
// controller does: again while it asks for a retry (the NLB provisioning,
// a new security group not visible yet).
func (l *lab) ensureActive(svc *v1.Service, nodes []*v1.Node) *v1.LoadBalancerStatus {
	l.t.Helper()
	st, err := l.ensure(svc, nodes)
	if err != nil {
		l.t.Fatalf("Ensure: %v", err)
	}
	return st
}

func targetsOf(tg awsdouble.TargetGroup) []string {
	var ids []string
	for _, t := range tg.Targets {
		ids = append(ids, t.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestNLBLifecycle(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	n2 := l.addNode("n2", "i-2", "198.18.0.12")
	n3 := l.addNode("n3", "i-3", "198.18.0.13")
	noProvider := n3.DeepCopy()
	noProvider.Name, noProvider.Spec.ProviderID = "bare", ""
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000001")

	st, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1, n2, noProvider})
	var retry *api.RetryError
	if !errors.As(err, &retry) {
		t.Fatalf("first Ensure = %v, %v; want a RetryError while the NLB provisions", st, err)
	}
	st = l.ensureActive(svc, []*v1.Node{n1, n2, noProvider})
	s := l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 {
		t.Fatalf("load balancers: %+v", s.LoadBalancers)
	}
	lb := s.LoadBalancers[0]
	if want := []v1.LoadBalancerIngress{{Hostname: lb.DNSName}}; !cmp.Equal(st.Ingress, want) {
		t.Errorf("status %+v, want %+v", st.Ingress, want)
	}
	if lb.Scheme != "internet-facing" || !cmp.Equal(lb.Subnets, []string{"subnet-a", "subnet-b"}) || lb.Tags[aws.TagServiceUID] != string(svc.UID) || lb.Tags[aws.TagCluster] != "prod" {
		t.Errorf("load balancer %+v: want internet-facing in the cluster's public subnets, tagged", lb)
	}
	if len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
		t.Fatalf("target groups %d, listeners %d; want 2 and 2", len(s.TargetGroups), len(s.Listeners))
	}
	byPort := map[int32]awsdouble.TargetGroup{}
	for _, tg := range s.TargetGroups {
		byPort[tg.Port] = tg
		if got := targetsOf(tg); !cmp.Equal(got, []string{"i-1", "i-2"}) {
			t.Errorf("group %s targets %v, want i-1 and i-2", tg.Name, got)
		}
		wantHC := awsdouble.HealthCheck{Enabled: true, Protocol: "TCP", Port: "traffic-port", IntervalSeconds: 10, TimeoutSeconds: 10, HealthyThreshold: 2, UnhealthyThreshold: 2}
		if tg.Protocol == "UDP" {
			// A UDP port cannot be checked itself: kube-proxy's health server.
			wantHC.Protocol, wantHC.Port, wantHC.Path = "HTTP", "10256", "/healthz"
		}
		if tg.HealthCheck != wantHC || tg.Tags[aws.TagServiceUID] != string(svc.UID) {
			t.Errorf("group %+v: want health check %+v, tagged", tg, wantHC)
		}
	}
	if byPort[30080].Protocol != "TCP" || byPort[30053].Protocol != "UDP" {
		t.Errorf("groups by NodePort: %+v", byPort)
	}
	for _, ls := range s.Listeners {
		want := map[int32]int32{80: 30080, 53: 30053}[ls.Port]
		if len(ls.Actions) != 1 || ls.Actions[0].TargetGroupARN != byPort[want].ARN {
			t.Errorf("listener on %d forwards to %+v, want the group on NodePort %d", ls.Port, ls.Actions, want)
		}
	}

	// Idempotent: another Ensure creates and registers nothing.
	before := map[string]int{}
	for _, a := range []string{"CreateLoadBalancer", "CreateTargetGroup", "CreateListener", "RegisterTargets", "ModifyListener"} {
		before[a] = l.srv.Calls(a)
	}
	l.ensureActive(svc, []*v1.Node{n1, n2})
	for a, n := range before {
		if got := l.srv.Calls(a); got != n {
			t.Errorf("second Ensure called %s %d more times", a, got-n)
		}
	}

	// Nodes change: targets follow.
	if err := l.b.Update(l.ctx, svc, []*v1.Node{n2, n3}); err != nil {
		t.Fatal(err)
	}
	for _, tg := range l.srv.Snapshot().TargetGroups {
		if got := targetsOf(tg); !cmp.Equal(got, []string{"i-2", "i-3"}) {
			t.Errorf("after Update, group %s targets %v, want i-2 and i-3", tg.Name, got)
		}
	}

	// A NodePort changes, a port goes, externalTrafficPolicy turns Local:
	// a new group with an HTTP health check, the old groups swept.
	svc.Spec.Ports = []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30081}}
	svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	svc.Spec.HealthCheckNodePort = 32000
	l.ensureActive(svc, []*v1.Node{n2, n3})
	s = l.srv.Snapshot()
	if len(s.TargetGroups) != 1 || len(s.Listeners) != 1 {
		t.Fatalf("after the port change: %d groups, %d listeners; want 1 and 1", len(s.TargetGroups), len(s.Listeners))
	}
	tg := s.TargetGroups[0]
	if tg.Port != 30081 || tg.HealthCheck.Protocol != "HTTP" || tg.HealthCheck.Port != "32000" || tg.HealthCheck.Path != "/healthz" {
		t.Errorf("group after the change: %+v", tg)
	}
	if got := targetsOf(tg); !cmp.Equal(got, []string{"i-2", "i-3"}) {
		t.Errorf("new group targets %v", got)
	}

	// Get tells the truth; Delete removes everything and is idempotent.
	if st, ok, err := l.b.Get(l.ctx, svc); err != nil || !ok || st.Ingress[0].Hostname != lb.DNSName {
		t.Errorf("Get = %+v, %v, %v", st, ok, err)
	}
	for range 2 {
		if err := l.delete(svc); err != nil {
			t.Fatal(err)
		}
	}
	s = l.srv.Snapshot()
	if len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Listeners) != 0 {
		t.Errorf("after Delete: %+v", s)
	}
	if _, ok, err := l.b.Get(l.ctx, svc); ok || err != nil {
		t.Errorf("Get after Delete = %v, %v; want not found", ok, err)
	}
}

func TestNLBRequests(t *testing.T) {
	for _, tc := range []struct {
		name        string
		svc         func(*v1.Service)
		wantErr     string
		wantScheme  string
		wantSubnets []string
		wantIPType  string
	}{
		{name: "internal by annotation uses the internal subnets", svc: annotate(v1alpha1.AnnotationAWSScheme, "internal"),
			wantScheme: "internal", wantSubnets: []string{"subnet-i"}, wantIPType: "ipv4"},
		{name: "subnets by annotation", svc: annotate(v1alpha1.AnnotationAWSSubnets, "subnet-b, subnet-a"),
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"}, wantIPType: "ipv4"},
		{name: "dual-stack Service gets a dualstack NLB", svc: func(s *v1.Service) { s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol} },
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"}, wantIPType: "dualstack"},
		{name: "dual-stack in a subnet without IPv6", svc: func(s *v1.Service) {
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
			annotate(v1alpha1.AnnotationAWSSubnets, "subnet-i")(s)
		}, wantErr: "subnet subnet-i has no IPv6 CIDR"},
		{name: "dual-stack internal: no discovered subnet has IPv6", svc: func(s *v1.Service) {
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
			annotate(v1alpha1.AnnotationAWSScheme, "internal")(s)
		}, wantErr: "subnet-i: no IPv6 CIDR (the Service is dual-stack)"},
		{name: "IPv6-only behind an ipv4 NLB", svc: func(s *v1.Service) {
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol}
			annotate(aws.AnnotationIPAddressType, "ipv4")(s)
		}, wantErr: "only a dualstack NLB forwards to"},
		{name: "bad scheme", svc: annotate(v1alpha1.AnnotationAWSScheme, "public"), wantErr: `berth.dev/aws-scheme="public"`},
		{name: "bad mode", svc: annotate(v1alpha1.AnnotationAWSMode, "alb"), wantErr: `berth.dev/aws-mode="alb"`},
		{name: "SCTP", svc: func(s *v1.Service) { s.Spec.Ports[0].Protocol = v1.ProtocolSCTP }, wantErr: "not SCTP"},
		{name: "no NodePorts", svc: func(s *v1.Service) { s.Spec.Ports[1].NodePort = 0 }, wantErr: "has no NodePort"},
		{name: "TCP and UDP on one port", svc: func(s *v1.Service) { s.Spec.Ports[1].Port = 80 }, wantErr: "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000002", tc.svc)
			if tc.wantErr != "" {
				_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1})
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ensure error %v, want it to contain %q", err, tc.wantErr)
				}
				if s := l.srv.Snapshot(); len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Addresses) != 0 {
					t.Errorf("a refused request created resources: %+v", s)
				}
				return
			}
			l.ensureActive(svc, []*v1.Node{n1})
			lb := l.srv.Snapshot().LoadBalancers[0]
			if lb.Scheme != tc.wantScheme || !cmp.Equal(lb.Subnets, tc.wantSubnets) || lb.IPAddressType != tc.wantIPType {
				t.Errorf("got scheme %s subnets %v type %s; want %s %v %s", lb.Scheme, lb.Subnets, lb.IPAddressType, tc.wantScheme, tc.wantSubnets, tc.wantIPType)
			}
		})
	}
}

// A load balancer with Berth's name but not its tags is never touched.
func TestNLBConflictIsLeftAlone(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000003")
	name := cloudprovider.DefaultLoadBalancerName(svc)
	if _, err := l.elb.CreateLoadBalancer(l.ctx, &elb.CreateLoadBalancerInput{
		Name: sdk.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-a"},
		Tags: []elbtypes.Tag{{Key: sdk.String("team"), Value: sdk.String("someone-else")}},
	}); err != nil {
		t.Fatal(err)
	}
	// ELB may not show the other NLB yet: Berth's create then meets it
	// (DuplicateLoadBalancerName) and asks for a retry; once it is shown,
	// its tags make it a conflict.
	_, err := l.ensure(svc, []*v1.Node{n1})
	var conflict *aws.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Ensure = %v, want a ConflictError", err)
	}
	if err := l.delete(svc); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	s := l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 || len(s.TargetGroups) != 0 || len(s.LoadBalancers[0].Tags) != 1 {
		t.Errorf("the other load balancer was touched or groups made: %+v", s)
	}
	if len(s.SecurityGroups) != 0 {
		t.Errorf("security groups left after Delete: %+v", s.SecurityGroups)
	}
	// The other NLB is no NLB of the Service's: Get reports nothing, so
	// the deleted Service's finalizer does not wait for it.
	if _, ok, err := l.b.Get(l.ctx, svc); ok || err != nil {
		t.Errorf("Get = %v, %v; want not found", ok, err)
	}
}

// Throttling is retried with backoff; a failure half-way is resumed by
// the next call and never leaks, including when the Service is deleted
// before the next call.
func TestNLBThrottlingAndPartialFailure(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	l.srv.SetSecurityGroupVisibilityDelay(0) // the call counts below are exact
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000004")

	l.srv.FailNext("CreateLoadBalancer", "Throttling", 2)
	l.srv.FailNext("RegisterTargets", "Throttling", 1)
	l.ensureActive(svc, []*v1.Node{n1})
	if got := l.srv.Calls("CreateLoadBalancer"); got != 3 {
		t.Errorf("CreateLoadBalancer calls = %d, want 3 (2 throttled)", got)
	}
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}

	// The listener call fails (not retryable): the NLB and a group exist.
	l.srv.FailNext("CreateListener", "TooManyListeners", 1)
	if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err == nil || !strings.Contains(err.Error(), "TooManyListeners") {
		t.Fatalf("Ensure = %v, want the listener failure", err)
	}
	l.ensureActive(svc, []*v1.Node{n1})
	s := l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 || len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
		t.Errorf("resumed: %d NLBs, %d groups, %d listeners; want 1, 2, 2", len(s.LoadBalancers), len(s.TargetGroups), len(s.Listeners))
	}

	// Fail again half-way, then delete: nothing stays behind.
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	l.srv.FailNext("CreateListener", "TooManyListeners", 1)
	if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err == nil {
		t.Fatal("Ensure succeeded despite the injected failure")
	}
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	if s := l.srv.Snapshot(); len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Listeners) != 0 {
		t.Errorf("leaked after a partial failure and Delete: %+v", s)
	}
}

// Discovery as the upstream provider does it, through the double's VPC:
// a Local Zone, a private subnet, and another VPC's subnet are passed over;
// a public subnet without the cluster tag is taken.
func TestNLBSubnetDiscovery(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	role := map[string]string{"kubernetes.io/role/elb": "1"}
	l.srv.AddSubnet("subnet-l", "vpc-1", "eu-west-1-lz-1a", "198.18.4.0/24", role)
	l.srv.SetZoneType("eu-west-1-lz-1a", "local-zone")
	l.srv.AddSubnet("subnet-p", "vpc-1", "eu-west-1c", "198.18.5.0/24", role) // main table: private
	l.srv.AddSubnet("subnet-u", "vpc-1", "eu-west-1d", "198.18.6.0/24", nil)  // no tags at all
	l.srv.AddSubnet("subnet-v", "vpc-2", "eu-west-1e", "198.18.7.0/24", map[string]string{"kubernetes.io/cluster/prod": "owned", "kubernetes.io/role/elb": "1"})
	l.srv.AddRouteTable("vpc-1", "igw-1", "subnet-l", "subnet-u")
	l.srv.AddRouteTable("vpc-2", "igw-2", "subnet-v")
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	l.ensureActive(service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000003"), []*v1.Node{n1})
	if got := l.srv.Snapshot().LoadBalancers[0].Subnets; !cmp.Equal(got, []string{"subnet-a", "subnet-b", "subnet-u"}) {
		t.Errorf("subnets %v, want subnet-a, subnet-b and the untagged public subnet-u", got)
	}
}
