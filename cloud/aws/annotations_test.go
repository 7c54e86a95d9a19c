package aws_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// reports records what the backend reports as unsupported.
type reports struct {
	mu  sync.Mutex
	got map[string][]string
}

func (r *reports) Unsupported(_ context.Context, svc *v1.Service, annotations []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]string{}
	}
	r.got[svc.Namespace+"/"+svc.Name] = slices.Clone(annotations)
	return nil
}

const up = "service.beta.kubernetes.io/aws-load-balancer-"

// TestNLBUpstreamAnnotations checks that the annotations users of the
// upstream AWS provider set are honoured, within what the operator
// allows, and that a refused request creates nothing.
func TestNLBUpstreamAnnotations(t *testing.T) {
	only := func(schemes ...string) func(*aws.Config) {
		return func(c *aws.Config) { c.NLB.AllowedSchemes = schemes }
	}
	for _, tc := range []struct {
		name        string
		cfg         func(*aws.Config)
		svc         []func(*v1.Service)
		wantErr     string
		wantScheme  string
		wantSubnets []string
		check       func(t *testing.T, s awsdouble.State)
	}{
		{name: "internal=true is internal", svc: []func(*v1.Service){annotate(up+"internal", "true")},
			wantScheme: "internal", wantSubnets: []string{"subnet-i"}},
		{name: "internal with a legacy CIDR value is internal", svc: []func(*v1.Service){annotate(up+"internal", "0.0.0.0/0")},
			wantScheme: "internal", wantSubnets: []string{"subnet-i"}},
		{name: "internal=false is internet-facing", svc: []func(*v1.Service){annotate(up+"internal", "false")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"}},
		{name: "scheme internal", svc: []func(*v1.Service){annotate(up+"scheme", "internal")},
			wantScheme: "internal", wantSubnets: []string{"subnet-i"}},
		{name: "type nlb", svc: []func(*v1.Service){annotate(up+"type", "nlb")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"}},
		{name: "scheme and internal disagree", svc: []func(*v1.Service){annotate(up+"internal", "true"), annotate(up+"scheme", "internet-facing")},
			wantErr: "disagree"},
		{name: "operator allows internal only: default becomes internal", cfg: only("internal"),
			wantScheme: "internal", wantSubnets: []string{"subnet-i"}},
		{name: "operator allows internal only: internet-facing refused", cfg: only("internal"),
			svc: []func(*v1.Service){annotate(up+"internal", "false")}, wantErr: "allows only internal"},
		{name: "operator allows internet-facing only: internal refused", cfg: only("internet-facing"),
			svc: []func(*v1.Service){annotate(up+"internal", "true")}, wantErr: "allows only internet-facing"},
		{name: "subnets by ID and Name tag", svc: []func(*v1.Service){annotate(up+"subnets", "public-b, subnet-a")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"}},
		{name: "subnet name unknown", svc: []func(*v1.Service){annotate(up+"subnets", "nowhere")}, wantErr: `no subnet is named "nowhere"`},
		{name: "subnets outside the operator's list", cfg: func(c *aws.Config) { c.NLB.AllowedSubnets = []string{"subnet-a"} },
			svc: []func(*v1.Service){annotate(up+"subnets", "subnet-a,subnet-x")}, wantErr: `"subnet-x", which the cluster operator does not allow`},
		{name: "subnets inside the operator's list", cfg: func(c *aws.Config) { c.NLB.AllowedSubnets = []string{"subnet-a", "subnet-b"} },
			svc: []func(*v1.Service){annotate(up+"subnets", "subnet-b")}, wantScheme: "internet-facing", wantSubnets: []string{"subnet-b"}},
		{name: "type external belongs to the AWS Load Balancer Controller", svc: []func(*v1.Service){annotate(up+"type", "external")},
			wantErr: cloudprovider.ImplementedElsewhere.Error()},
		{name: "type clb refused", svc: []func(*v1.Service){annotate(up+"type", "clb")}, wantErr: "network load balancers only"},
		{name: "eip mode refuses an internal Service", svc: []func(*v1.Service){eipMode, annotate(up+"internal", "true")},
			wantErr: "eip mode gives a public address"},
		{name: "additional tags on every resource, ownership tags kept",
			svc:        []func(*v1.Service){annotate(up+"additional-resource-tags", "team=web, cost-center=42")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"},
			check: func(t *testing.T, s awsdouble.State) {
				tags := []map[string]string{s.LoadBalancers[0].Tags}
				for _, tg := range s.TargetGroups {
					tags = append(tags, tg.Tags)
				}
				for _, m := range tags {
					if m["team"] != "web" || m["cost-center"] != "42" || m[aws.TagCluster] != "prod" {
						t.Errorf("tags %v: want the additional ones beside Berth's", m)
					}
				}
			}},
		{name: "additional tags cannot forge ownership", svc: []func(*v1.Service){annotate(up+"additional-resource-tags", "berth.dev/service-uid=x")},
			wantErr: "reserved"},
		{name: "health check annotations", svc: []func(*v1.Service){
			annotate(up+"healthcheck-protocol", "http"), annotate(up+"healthcheck-port", "8080"), annotate(up+"healthcheck-path", "/ready"),
			annotate(up+"healthcheck-interval", "30"), annotate(up+"healthcheck-timeout", "6"),
			annotate(up+"healthcheck-healthy-threshold", "3"), annotate(up+"healthcheck-unhealthy-threshold", "4")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"},
			check: func(t *testing.T, s awsdouble.State) {
				want := awsdouble.HealthCheck{Enabled: true, Protocol: "HTTP", Port: "8080", Path: "/ready", IntervalSeconds: 30,
					TimeoutSeconds: 6, HealthyThreshold: 3, UnhealthyThreshold: 4}
				for _, tg := range s.TargetGroups {
					if diff := cmp.Diff(want, tg.HealthCheck); diff != "" {
						t.Errorf("group %s health check (-want +got):\n%s", tg.Name, diff)
					}
				}
			}},
		{name: "bad health check interval", svc: []func(*v1.Service){annotate(up+"healthcheck-interval", "1")}, wantErr: "from 5 to 300"},
		{name: "target node labels select targets", svc: []func(*v1.Service){annotate(up+"target-node-labels", "pool=edge")},
			wantScheme: "internet-facing", wantSubnets: []string{"subnet-a", "subnet-b"},
			check: func(t *testing.T, s awsdouble.State) {
				for _, tg := range s.TargetGroups {
					if got := targetsOf(tg); !cmp.Equal(got, []string{"i-2"}) {
						t.Errorf("group %s targets %v, want only the labelled node's i-2", tg.Name, got)
					}
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var muts []func(*aws.Config)
			if tc.cfg != nil {
				muts = append(muts, tc.cfg)
			}
			l := newLab(t, muts...)
			l.srv.SetSubnetTags("subnet-b", map[string]string{"Name": "public-b"})
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			n2 := l.addNode("n2", "i-2", "198.18.0.12")
			n2.Labels = map[string]string{"pool": "edge"}
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000102", tc.svc...)
			if tc.wantErr != "" {
				_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1, n2})
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ensure error %v, want it to contain %q", err, tc.wantErr)
				}
				if tc.wantErr == cloudprovider.ImplementedElsewhere.Error() && !errors.Is(err, cloudprovider.ImplementedElsewhere) {
					t.Errorf("error %v is not cloudprovider.ImplementedElsewhere itself", err)
				}
				if s := l.srv.Snapshot(); len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Addresses) != 0 {
					t.Errorf("a refused request created resources: %+v", s)
				}
				return
			}
			l.ensureActive(svc, []*v1.Node{n1, n2})
			s := l.srv.Snapshot()
			lb := s.LoadBalancers[0]
			if lb.Scheme != tc.wantScheme || !cmp.Equal(lb.Subnets, tc.wantSubnets) {
				t.Errorf("got scheme %s subnets %v; want %s %v", lb.Scheme, lb.Subnets, tc.wantScheme, tc.wantSubnets)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
			// A second call changes nothing (the health check included).
			modify := l.srv.Calls("ModifyTargetGroup")
			l.ensureActive(svc, []*v1.Node{n1, n2})
			if got := l.srv.Calls("ModifyTargetGroup"); got != modify {
				t.Errorf("a second Ensure modified target groups %d times", got-modify)
			}
		})
	}
}

// An annotation Berth does not implement is reported (Event and condition
// in production), never silently ignored, and the load balancer is still
// made; once it is gone the report is cleared.
func TestNLBUnsupportedAnnotationsReported(t *testing.T) {
	l := newLab(t)
	rep := &reports{}
	l.b.SetReporter(rep)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000103",
		annotate(up+"ssl-cert", "arn:aws:acm:eu-west-1:123456789012:certificate/x"),
		annotate(up+"proxy-protocol", "*"), annotate(up+"internal", "true"))
	l.ensureActive(svc, []*v1.Node{n1})
	want := []string{up + "proxy-protocol", up + "ssl-cert"}
	if got := rep.got["default/web"]; !cmp.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
	delete(svc.Annotations, up+"ssl-cert")
	delete(svc.Annotations, up+"proxy-protocol")
	l.ensureActive(svc, []*v1.Node{n1})
	if got, ok := rep.got["default/web"]; !ok || len(got) != 0 {
		t.Errorf("after removing them, reported %v (present %v); want an empty report", got, ok)
	}
}
