package awsdouble_test

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

func nlbInput(name string, subnets ...string) *elbv2.CreateLoadBalancerInput {
	return &elbv2.CreateLoadBalancerInput{Name: aws.String(name), Type: types.LoadBalancerTypeEnumNetwork,
		Scheme: types.LoadBalancerSchemeEnumInternetFacing, Subnets: subnets,
		Tags: []types.Tag{{Key: aws.String("berth"), Value: aws.String("svc")}}}
}

func TestCreateLoadBalancer(t *testing.T) {
	f := newFixture(t)
	first, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("web", "subnet-a", "subnet-b"))
	if err != nil {
		t.Fatal(err)
	}
	lb := first.LoadBalancers[0]
	arn := regexp.MustCompile(`^arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/web/([0-9a-f]{16})$`)
	m := arn.FindStringSubmatch(aws.ToString(lb.LoadBalancerArn))
	if m == nil {
		t.Fatalf("ARN %s does not match %s", aws.ToString(lb.LoadBalancerArn), arn)
	}
	got := []string{aws.ToString(lb.DNSName), aws.ToString(lb.CanonicalHostedZoneId), aws.ToString(lb.LoadBalancerName),
		string(lb.Scheme), aws.ToString(lb.VpcId), string(lb.State.Code), string(lb.Type), string(lb.IpAddressType),
		fmt.Sprint(aws.ToString(lb.AvailabilityZones[0].ZoneName), " ", aws.ToString(lb.AvailabilityZones[0].SubnetId), " ",
			aws.ToString(lb.AvailabilityZones[1].ZoneName), " ", aws.ToString(lb.AvailabilityZones[1].SubnetId))}
	want := []string{"web-" + m[1] + ".elb.eu-west-1.amazonaws.com", "Z2IFOLAFXWLO4F", "web", "internet-facing", "vpc-1",
		"provisioning", "network", "ipv4", "eu-west-1a subnet-a eu-west-1b subnet-b"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("load balancer (-want +got):\n%s", d)
	}

	internal := nlbInput("web", "subnet-a", "subnet-b")
	internal.Scheme = types.LoadBalancerSchemeEnumInternal
	application := nlbInput("app", "subnet-a")
	application.Type = types.LoadBalancerTypeEnumApplication
	tests := []struct {
		name     string
		in       *elbv2.CreateLoadBalancerInput
		wantCode string
	}{
		{name: "same settings is idempotent", in: nlbInput("web", "subnet-b", "subnet-a")},
		{name: "same name, other settings", in: internal, wantCode: "DuplicateLoadBalancerName"},
		{name: "name too long", in: nlbInput("a23456789012345678901234567890123", "subnet-a"), wantCode: "ValidationError"},
		{name: "name starts with hyphen", in: nlbInput("-web", "subnet-a"), wantCode: "ValidationError"},
		{name: "name with underscore", in: nlbInput("we_b", "subnet-a"), wantCode: "ValidationError"},
		{name: "unknown subnet", in: nlbInput("x", "subnet-a", "subnet-x"), wantCode: "SubnetNotFound"},
		{name: "two subnets in one zone", in: nlbInput("x", "subnet-a", "subnet-a2"), wantCode: "InvalidConfigurationRequest"},
		{name: "two VPCs", in: nlbInput("x", "subnet-b", "subnet-c"), wantCode: "InvalidConfigurationRequest"},
		{name: "no subnets", in: nlbInput("x"), wantCode: "ValidationError"},
		{name: "application load balancer", in: application, wantCode: "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.elb.CreateLoadBalancer(t.Context(), tt.in)
			if got := code(err); got != tt.wantCode {
				t.Fatalf("error code = %q, want %q", got, tt.wantCode)
			}
			if err == nil && aws.ToString(out.LoadBalancers[0].LoadBalancerArn) != m[0] {
				t.Errorf("ARN = %s, want the first one, %s", aws.ToString(out.LoadBalancers[0].LoadBalancerArn), m[0])
			}
		})
	}
	if n := len(f.srv.Snapshot().LoadBalancers); n != 1 {
		t.Errorf("%d load balancers, want 1", n)
	}
}

func TestLoadBalancerProvisioning(t *testing.T) {
	tests := []struct {
		describes int
		want      []string // create, then three describes
	}{
		{0, []string{"active", "active", "active", "active"}},
		{1, []string{"provisioning", "active", "active", "active"}},
		{2, []string{"provisioning", "provisioning", "active", "active"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.describes), func(t *testing.T) {
			f := newFixture(t)
			f.srv.SetProvisioningDescribes(tt.describes)
			out, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("web", "subnet-a"))
			if err != nil {
				t.Fatal(err)
			}
			got := []string{string(out.LoadBalancers[0].State.Code)}
			for range 3 {
				d, err := f.elb.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{Names: []string{"web"}})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(d.LoadBalancers[0].State.Code))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("states (-want +got):\n%s", d)
			}
		})
	}
}

func TestDescribeLoadBalancers(t *testing.T) {
	f := newFixture(t)
	var arns []string
	for _, name := range []string{"one", "two"} {
		out, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput(name, "subnet-a"))
		if err != nil {
			t.Fatal(err)
		}
		arns = append(arns, aws.ToString(out.LoadBalancers[0].LoadBalancerArn))
	}
	tests := []struct {
		name     string
		in       elbv2.DescribeLoadBalancersInput
		want     []string
		wantCode string
	}{
		{name: "all", want: []string{"one", "two"}},
		{name: "by name", in: elbv2.DescribeLoadBalancersInput{Names: []string{"two"}}, want: []string{"two"}},
		{name: "by ARN", in: elbv2.DescribeLoadBalancersInput{LoadBalancerArns: arns[:1]}, want: []string{"one"}},
		{name: "missing name", in: elbv2.DescribeLoadBalancersInput{Names: []string{"one", "three"}},
			wantCode: "LoadBalancerNotFound"},
		{name: "missing ARN", in: elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arns[0] + "0"}},
			wantCode: "LoadBalancerNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.elb.DescribeLoadBalancers(t.Context(), &tt.in)
			if got := code(err); got != tt.wantCode {
				t.Fatalf("error code = %q, want %q", got, tt.wantCode)
			}
			if err != nil {
				return
			}
			var got []string
			for _, lb := range out.LoadBalancers {
				got = append(got, aws.ToString(lb.LoadBalancerName))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("names (-want +got):\n%s", d)
			}
		})
	}
}

func tgInput(name string, port int32) *elbv2.CreateTargetGroupInput {
	return &elbv2.CreateTargetGroupInput{Name: aws.String(name), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(port),
		VpcId: aws.String("vpc-1"), TargetType: types.TargetTypeEnumInstance,
		Tags: []types.Tag{{Key: aws.String("berth"), Value: aws.String("svc")}}}
}

// tgView flattens a target group's fields.
func tgView(tg types.TargetGroup) string {
	return fmt.Sprint(aws.ToString(tg.TargetGroupName), " ", tg.Protocol, " ", aws.ToInt32(tg.Port), " ",
		aws.ToString(tg.VpcId), " ", tg.TargetType, " ", tg.IpAddressType, " hc:", aws.ToBool(tg.HealthCheckEnabled), " ",
		tg.HealthCheckProtocol, " ", aws.ToString(tg.HealthCheckPort), " ", aws.ToString(tg.HealthCheckPath), " ",
		aws.ToInt32(tg.HealthCheckIntervalSeconds), " ", aws.ToInt32(tg.HealthCheckTimeoutSeconds), " ",
		aws.ToInt32(tg.HealthyThresholdCount), " ", aws.ToInt32(tg.UnhealthyThresholdCount), " lbs:", len(tg.LoadBalancerArns))
}

// TestTargetGroupsAndListeners walks the life of a Service's resources.
func TestTargetGroupsAndListeners(t *testing.T) {
	f := newFixture(t)
	lb, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("web", "subnet-a", "subnet-b"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("other", "subnet-a"))
	if err != nil {
		t.Fatal(err)
	}
	lbARN, otherARN := lb.LoadBalancers[0].LoadBalancerArn, other.LoadBalancers[0].LoadBalancerArn
	var tgARN, listenerARN *string
	missingTG := aws.String("arn:x:targetgroup/y")
	createTG := func(in *elbv2.CreateTargetGroupInput, want string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.CreateTargetGroup(ctx, in)
			if err != nil {
				return err
			}
			if tgARN == nil {
				tgARN = out.TargetGroups[0].TargetGroupArn
			} else if *tgARN != aws.ToString(out.TargetGroups[0].TargetGroupArn) {
				return fmt.Errorf("ARN %s, want %s", aws.ToString(out.TargetGroups[0].TargetGroupArn), *tgARN)
			}
			return check("target group", tgView(out.TargetGroups[0]), want)
		}
	}
	describeTGs := func(in *elbv2.DescribeTargetGroupsInput, want ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.DescribeTargetGroups(ctx, in)
			if err != nil {
				return err
			}
			var got []string
			for _, tg := range out.TargetGroups {
				got = append(got, tgView(tg))
			}
			return check("target groups", got, want)
		}
	}
	targets := func(register bool, arn **string, ids ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			var ts []types.TargetDescription
			for _, id := range ids {
				ts = append(ts, types.TargetDescription{Id: aws.String(id)})
			}
			if register {
				_, err := f.elb.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: *arn, Targets: ts})
				return err
			}
			_, err := f.elb.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: *arn, Targets: ts})
			return err
		}
	}
	health := func(want ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: tgARN})
			if err != nil {
				return err
			}
			var got []string
			for _, d := range out.TargetHealthDescriptions {
				got = append(got, fmt.Sprint(aws.ToString(d.Target.Id), " ", aws.ToInt32(d.Target.Port), " ",
					aws.ToString(d.HealthCheckPort), " ", d.TargetHealth.State, " ", d.TargetHealth.Reason))
			}
			return check("health", got, want)
		}
	}
	createListener := func(lb *string, port int32, wantSame bool) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lb, Port: aws.Int32(port),
				Protocol: types.ProtocolEnumTcp, DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: tgARN}}})
			if err != nil {
				return err
			}
			l := out.Listeners[0]
			if wantSame && aws.ToString(l.ListenerArn) != aws.ToString(listenerARN) {
				return fmt.Errorf("listener %s, want the first one %s", aws.ToString(l.ListenerArn), aws.ToString(listenerARN))
			}
			listenerARN = l.ListenerArn
			return check("listener", fmt.Sprint(aws.ToString(l.LoadBalancerArn), " ", aws.ToInt32(l.Port), " ", l.Protocol,
				" ", l.DefaultActions[0].Type, " ", aws.ToString(l.DefaultActions[0].TargetGroupArn)),
				fmt.Sprint(aws.ToString(lb), " ", port, " TCP forward ", aws.ToString(tgARN)))
		}
	}
	describeListeners := func(in *elbv2.DescribeListenersInput, want ...int32) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.DescribeListeners(ctx, in)
			if err != nil {
				return err
			}
			var got []int32
			for _, l := range out.Listeners {
				got = append(got, aws.ToInt32(l.Port))
			}
			return check("listener ports", got, want)
		}
	}
	hcChanged := tgInput("web-tcp-80", 30080)
	hcChanged.HealthCheckIntervalSeconds = aws.Int32(10)
	const defaults = "web-tcp-80 TCP 30080 vpc-1 instance ipv4 hc:true TCP traffic-port  30 10 5 2"
	runSteps(t, []step{
		{name: "create target group", run: createTG(tgInput("web-tcp-80", 30080), defaults+" lbs:0")},
		{name: "create again", run: createTG(tgInput("web-tcp-80", 30080), defaults+" lbs:0")},
		{name: "create with other settings", run: createTG(hcChanged, ""), wantCode: "DuplicateTargetGroupName"},
		{name: "create with bad name", run: createTG(tgInput("web_80", 80), ""), wantCode: "ValidationError"},
		{name: "modify health check", run: func(ctx context.Context) error {
			out, err := f.elb.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: tgARN,
				HealthCheckProtocol: types.ProtocolEnumHttp, HealthCheckPort: aws.String("10256"),
				HealthCheckPath: aws.String("/healthz"), HealthCheckIntervalSeconds: aws.Int32(10),
				HealthCheckTimeoutSeconds: aws.Int32(6), HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(3)})
			if err != nil {
				return err
			}
			return check("target group", tgView(out.TargetGroups[0]),
				"web-tcp-80 TCP 30080 vpc-1 instance ipv4 hc:true HTTP 10256 /healthz 10 6 2 3 lbs:0")
		}},
		{name: "modify with bad interval", wantCode: "ValidationError", run: func(ctx context.Context) error {
			_, err := f.elb.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: tgARN,
				HealthCheckIntervalSeconds: aws.Int32(1)})
			return err
		}},
		{name: "register", run: targets(true, &tgARN, "i-1", "i-2")},
		{name: "register unknown instance", run: targets(true, &tgARN, "i-9"), wantCode: "InvalidTarget"},
		{name: "register in missing group", run: targets(true, &missingTG, "i-1"),
			wantCode: "TargetGroupNotFound"},
		{name: "stop an instance", run: func(context.Context) error { f.srv.SetInstanceState("i-2", "stopped"); return nil }},
		{name: "health", run: health("i-1 30080 10256 healthy ", "i-2 30080 10256 unused Target.InvalidState")},
		{name: "deregister", run: targets(false, &tgARN, "i-2")},
		{name: "health after deregister", run: health("i-1 30080 10256 healthy ")},
		{name: "create listener", run: createListener(lbARN, 80, false)},
		{name: "create listener again", run: createListener(lbARN, 80, true)},
		{name: "target group on a second load balancer", run: createListener(otherARN, 80, false),
			wantCode: "TargetGroupAssociationLimit"},
		{name: "listener on a missing load balancer", run: createListener(aws.String("arn:x:loadbalancer/y"), 80, false),
			wantCode: "LoadBalancerNotFound"},
		{name: "same port, other settings", wantCode: "DuplicateListener", run: func(ctx context.Context) error {
			_, err := f.elb.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lbARN, Port: aws.Int32(80),
				Protocol: types.ProtocolEnumUdp, DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: tgARN}}})
			return err
		}},
		{name: "second listener", run: createListener(lbARN, 443, false)},
		{name: "describe target groups by load balancer", run: describeTGs(&elbv2.DescribeTargetGroupsInput{
			LoadBalancerArn: lbARN}, "web-tcp-80 TCP 30080 vpc-1 instance ipv4 hc:true HTTP 10256 /healthz 10 6 2 3 lbs:1")},
		{name: "describe target groups of other", run: describeTGs(&elbv2.DescribeTargetGroupsInput{LoadBalancerArn: otherARN})},
		{name: "describe missing target group", run: describeTGs(&elbv2.DescribeTargetGroupsInput{Names: []string{"nope"}}),
			wantCode: "TargetGroupNotFound"},
		{name: "describe listeners by load balancer", run: describeListeners(&elbv2.DescribeListenersInput{LoadBalancerArn: lbARN}, 80, 443)},
		{name: "modify listener", run: func(ctx context.Context) error {
			_, err := f.elb.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: listenerARN, Port: aws.Int32(8443)})
			if err != nil {
				return err
			}
			return describeListeners(&elbv2.DescribeListenersInput{ListenerArns: []string{*listenerARN}}, 8443)(ctx)
		}},
		{name: "modify listener onto a used port", wantCode: "DuplicateListener", run: func(ctx context.Context) error {
			_, err := f.elb.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: listenerARN, Port: aws.Int32(80)})
			return err
		}},
		{name: "describe missing listener", run: describeListeners(&elbv2.DescribeListenersInput{ListenerArns: []string{"arn:x:listener/y"}}),
			wantCode: "ListenerNotFound"},
		{name: "describe listeners of missing load balancer", run: describeListeners(&elbv2.DescribeListenersInput{
			LoadBalancerArn: aws.String("arn:x:loadbalancer/y")}), wantCode: "LoadBalancerNotFound"},
		{name: "delete target group in use", wantCode: "ResourceInUse", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: tgARN})
			return err
		}},
		{name: "delete listener", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: listenerARN})
			return err
		}},
		{name: "delete listener again", wantCode: "ListenerNotFound", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: listenerARN})
			return err
		}},
		{name: "delete load balancer", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lbARN})
			return err
		}},
		{name: "delete load balancer again", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lbARN})
			return err
		}},
		{name: "target group stays, unattached", run: describeTGs(&elbv2.DescribeTargetGroupsInput{Names: []string{"web-tcp-80"}},
			"web-tcp-80 TCP 30080 vpc-1 instance ipv4 hc:true HTTP 10256 /healthz 10 6 2 3 lbs:0")},
		{name: "delete target group", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: tgARN})
			return err
		}},
		{name: "delete target group again", run: func(ctx context.Context) error {
			_, err := f.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: tgARN})
			return err
		}},
	})
	st := f.srv.Snapshot()
	if len(st.LoadBalancers) != 1 || len(st.TargetGroups) != 0 || len(st.Listeners) != 0 {
		t.Errorf("left over: %+v", st)
	}
}

func TestELBv2Tags(t *testing.T) {
	f := newFixture(t)
	lb, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("web", "subnet-a"))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := f.elb.CreateTargetGroup(t.Context(), tgInput("web-80", 80))
	if err != nil {
		t.Fatal(err)
	}
	l, err := f.elb.CreateListener(t.Context(), &elbv2.CreateListenerInput{LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn,
		Port: aws.Int32(80), Protocol: types.ProtocolEnumTcp, Tags: []types.Tag{{Key: aws.String("l"), Value: aws.String("1")}},
		DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: tg.TargetGroups[0].TargetGroupArn}}})
	if err != nil {
		t.Fatal(err)
	}
	arns := []string{*lb.LoadBalancers[0].LoadBalancerArn, *tg.TargetGroups[0].TargetGroupArn, *l.Listeners[0].ListenerArn}
	describe := func(want ...map[string]string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: arns})
			if err != nil {
				return err
			}
			var got []map[string]string
			for i, d := range out.TagDescriptions {
				if aws.ToString(d.ResourceArn) != arns[i] {
					return fmt.Errorf("description %d is for %s, want %s", i, aws.ToString(d.ResourceArn), arns[i])
				}
				m := map[string]string{}
				for _, t := range d.Tags {
					m[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				got = append(got, m)
			}
			return check("tags", got, want)
		}
	}
	tagsOn := func(arns ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: arns})
			return err
		}
	}
	many := make([]string, 21)
	for i := range many {
		many[i] = arns[0]
	}
	runSteps(t, []step{
		{name: "tags from create", run: describe(map[string]string{"berth": "svc"}, map[string]string{"berth": "svc"},
			map[string]string{"l": "1"})},
		{name: "add", run: func(ctx context.Context) error {
			_, err := f.elb.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: arns,
				Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}, {Key: aws.String("berth"), Value: aws.String("x")}}})
			return err
		}},
		{name: "remove", run: func(ctx context.Context) error {
			_, err := f.elb.RemoveTags(ctx, &elbv2.RemoveTagsInput{ResourceArns: arns[1:], TagKeys: []string{"k", "l"}})
			return err
		}},
		{name: "after add and remove", run: describe(map[string]string{"berth": "x", "k": "v"}, map[string]string{"berth": "x"},
			map[string]string{"berth": "x"})},
		{name: "missing load balancer", run: tagsOn(arns[0] + "0"), wantCode: "LoadBalancerNotFound"},
		{name: "missing target group", run: tagsOn(arns[1] + "0"), wantCode: "TargetGroupNotFound"},
		{name: "missing listener", run: tagsOn(arns[2] + "0"), wantCode: "ListenerNotFound"},
		{name: "more than 20 resources", run: tagsOn(many...), wantCode: "ValidationError"},
	})
}

// TestSnapshot checks what tests built on the double assert on.
func TestSnapshot(t *testing.T) {
	f := newFixture(t)
	f.srv.SetProvisioningDescribes(0)
	lb, err := f.elb.CreateLoadBalancer(t.Context(), nlbInput("web", "subnet-a"))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := f.elb.CreateTargetGroup(t.Context(), tgInput("web-80", 30080))
	if err != nil {
		t.Fatal(err)
	}
	lbARN, tgARN := *lb.LoadBalancers[0].LoadBalancerArn, *tg.TargetGroups[0].TargetGroupArn
	l, err := f.elb.CreateListener(t.Context(), &elbv2.CreateListenerInput{LoadBalancerArn: &lbARN, Port: aws.Int32(80),
		Protocol: types.ProtocolEnumTcp, DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: &tgARN}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.elb.RegisterTargets(t.Context(), &elbv2.RegisterTargetsInput{TargetGroupArn: &tgARN,
		Targets: []types.TargetDescription{{Id: aws.String("i-1"), Port: aws.Int32(31000)}}}); err != nil {
		t.Fatal(err)
	}
	st := f.srv.Snapshot()
	want := awsdouble.State{
		LoadBalancers: []awsdouble.LoadBalancer{{ARN: lbARN, Name: "web", DNSName: *lb.LoadBalancers[0].DNSName,
			Type: "network", Scheme: "internet-facing", IPAddressType: "ipv4", VPCID: "vpc-1", State: "active",
			Subnets: []string{"subnet-a"}, Tags: map[string]string{"berth": "svc"}}},
		TargetGroups: []awsdouble.TargetGroup{{ARN: tgARN, Name: "web-80", Protocol: "TCP", Port: 30080, VPCID: "vpc-1",
			TargetType: "instance", IPAddressType: "ipv4", HealthCheck: awsdouble.HealthCheck{Enabled: true, Protocol: "TCP",
				Port: "traffic-port", IntervalSeconds: 30, TimeoutSeconds: 10, HealthyThreshold: 5, UnhealthyThreshold: 2},
			Targets: []awsdouble.Target{{ID: "i-1", Port: 31000}}, LoadBalancerARNs: []string{lbARN},
			Tags: map[string]string{"berth": "svc"}}},
		Listeners: []awsdouble.Listener{{ARN: *l.Listeners[0].ListenerArn, LoadBalancerARN: lbARN, Protocol: "TCP", Port: 80,
			Actions: []awsdouble.Action{{Type: "forward", TargetGroupARN: tgARN}}, Tags: map[string]string{}}},
	}
	got := awsdouble.State{LoadBalancers: st.LoadBalancers, TargetGroups: st.TargetGroups, Listeners: st.Listeners}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("snapshot (-want +got):\n%s", d)
	}
	st.LoadBalancers[0].Tags["changed"] = "x"
	st.TargetGroups[0].Targets[0].Port = 1
	if d := cmp.Diff(want.TargetGroups, f.srv.Snapshot().TargetGroups); d != "" || len(f.srv.Snapshot().LoadBalancers[0].Tags) != 1 {
		t.Errorf("changing a snapshot changed the server:\n%s", d)
	}
	if n := len(st.NetworkInterfaces); n != 2 || st.NetworkInterfaces[0].PrivateIPs[0] != "10.0.1.10" {
		t.Errorf("network interfaces = %+v", st.NetworkInterfaces)
	}
}

// TestELBVisibilityDelay: a new load balancer or target group is missing
// from the next two describes that would show it (NotFound by name or ARN,
// left out of a listing), and the third shows it.
func TestELBVisibilityDelay(t *testing.T) {
	f := newFixture(t)
	f.srv.SetELBVisibilityDelay(2)
	ctx := t.Context()
	newLB := func(name string) string {
		out, err := f.elb.CreateLoadBalancer(ctx, nlbInput(name, "subnet-a"))
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.LoadBalancers[0].LoadBalancerArn)
	}
	newTG := func(name string) string {
		out, err := f.elb.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String(name), Protocol: types.ProtocolEnumTcp,
			Port: aws.Int32(30080), VpcId: aws.String("vpc-1")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.TargetGroups[0].TargetGroupArn)
	}
	lbs := func(in *elbv2.DescribeLoadBalancersInput) (int, error) {
		out, err := f.elb.DescribeLoadBalancers(ctx, in)
		if err != nil {
			return 0, err
		}
		return len(out.LoadBalancers), nil
	}
	tgs := func(in *elbv2.DescribeTargetGroupsInput) (int, error) {
		out, err := f.elb.DescribeTargetGroups(ctx, in)
		if err != nil {
			return 0, err
		}
		return len(out.TargetGroups), nil
	}
	for _, tc := range []struct {
		name     string
		describe func() (int, error) // creates its resource first
		notFound string              // the error code while invisible; "" for a listing
	}{
		{"load balancer by name", func() func() (int, error) {
			newLB("by-name")
			return func() (int, error) { return lbs(&elbv2.DescribeLoadBalancersInput{Names: []string{"by-name"}}) }
		}(), "LoadBalancerNotFound"},
		{"load balancer by ARN", func() func() (int, error) {
			arn := newLB("by-arn")
			return func() (int, error) { return lbs(&elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}}) }
		}(), "LoadBalancerNotFound"},
		{"target group by name", func() func() (int, error) {
			newTG("tg-by-name")
			return func() (int, error) { return tgs(&elbv2.DescribeTargetGroupsInput{Names: []string{"tg-by-name"}}) }
		}(), "TargetGroupNotFound"},
		{"target group by ARN", func() func() (int, error) {
			arn := newTG("tg-by-arn")
			return func() (int, error) { return tgs(&elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}) }
		}(), "TargetGroupNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for call := 1; call <= 3; call++ {
				n, err := tc.describe()
				switch {
				case call <= 2 && code(err) != tc.notFound:
					t.Errorf("call %d: %d found, error %v; want %s", call, n, err, tc.notFound)
				case call == 3 && (err != nil || n != 1):
					t.Errorf("call %d: %d found, error %v; want it visible", call, n, err)
				}
			}
		})
	}
	t.Run("listings", func(t *testing.T) {
		newLB("listed")
		newTG("tg-listed")
		// Two of each kind were made above; the new one shows third.
		for call, want := range []int{2, 2, 3} {
			if n, err := lbs(&elbv2.DescribeLoadBalancersInput{}); err != nil || n != want {
				t.Errorf("load balancers, call %d: %d listed, error %v; want %d", call+1, n, err, want)
			}
			if n, err := tgs(&elbv2.DescribeTargetGroupsInput{}); err != nil || n != want {
				t.Errorf("target groups, call %d: %d listed, error %v; want %d", call+1, n, err, want)
			}
		}
	})
}

// TestListenerVisibilityDelay: a new listener is missing from the next two
// DescribeListeners calls that would show it (ListenerNotFound by ARN,
// left out of its load balancer's listing), and the third shows it.
func TestListenerVisibilityDelay(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	lb, err := f.elb.CreateLoadBalancer(ctx, nlbInput("web", "subnet-a"))
	if err != nil {
		t.Fatal(err)
	}
	lbARN := lb.LoadBalancers[0].LoadBalancerArn
	newListener := func(port int32) string {
		tg, err := f.elb.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String(fmt.Sprintf("tg-%d", port)),
			Protocol: types.ProtocolEnumTcp, Port: aws.Int32(30000 + port), VpcId: aws.String("vpc-1")})
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.elb.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lbARN, Port: aws.Int32(port),
			Protocol: types.ProtocolEnumTcp, DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: tg.TargetGroups[0].TargetGroupArn}}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Listeners[0].ListenerArn)
	}
	newListener(80) // made before the delay: always shown
	f.srv.SetELBVisibilityDelay(2)
	byARN := newListener(443)
	for call := 1; call <= 3; call++ {
		_, err := f.elb.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{byARN}})
		if want := map[bool]string{true: "ListenerNotFound", false: ""}[call <= 2]; code(err) != want {
			t.Errorf("by ARN, call %d: error %v, want %q", call, err, want)
		}
	}
	newListener(8080)
	for call, want := range []int{2, 2, 3} {
		out, err := f.elb.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: lbARN})
		if err != nil || len(out.Listeners) != want {
			t.Errorf("listing, call %d: error %v, %d listeners; want %d", call+1, err, len(out.Listeners), want)
		}
	}
}

// TestELBTagVisibilityDelay: tags given at creation or added later are
// missing from the next two DescribeTags calls naming the resource, which
// show the tags it had before; the third shows them.
func TestELBTagVisibilityDelay(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.srv.SetELBTagVisibilityDelay(2)
	lb, err := f.elb.CreateLoadBalancer(ctx, nlbInput("web", "subnet-a"))
	if err != nil {
		t.Fatal(err)
	}
	arn := lb.LoadBalancers[0].LoadBalancerArn
	tags := func() map[string]string {
		out, err := f.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{aws.ToString(arn)}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, tg := range out.TagDescriptions[0].Tags {
			m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		return m
	}
	created := map[string]string{"berth": "svc"}
	added := map[string]string{"berth": "svc", "team": "a"}
	for i, want := range []map[string]string{{}, {}, created} {
		if got := tags(); !maps.Equal(got, want) {
			t.Errorf("after create, call %d: tags %v, want %v", i+1, got, want)
		}
	}
	if _, err := f.elb.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{aws.ToString(arn)},
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("a")}}}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []map[string]string{created, created, added} {
		if got := tags(); !maps.Equal(got, want) {
			t.Errorf("after AddTags, call %d: tags %v, want %v", i+1, got, want)
		}
	}
}
