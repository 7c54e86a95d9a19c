package awsdouble_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// fixture is a double with two subnets in vpc-1 and one in vpc-2, two
// instances in vpc-1, and real SDK clients pointed at it.
type fixture struct {
	srv  *awsdouble.Server
	ec2  *ec2.Client
	elb  *elbv2.Client
	eni1 string
	eni2 string
}

func newFixture(t *testing.T, opts ...awsdouble.Option) *fixture {
	t.Helper()
	s := awsdouble.Start(t, opts...)
	s.AddSubnet("subnet-a", "vpc-1", "eu-west-1a", "10.0.1.0/24", map[string]string{"kubernetes.io/role/elb": "1"})
	s.AddSubnet("subnet-b", "vpc-1", "eu-west-1b", "10.0.2.0/24", nil)
	s.AddSubnet("subnet-a2", "vpc-1", "eu-west-1a", "10.0.3.0/24", nil)
	s.AddSubnet("subnet-c", "vpc-2", "eu-west-1a", "10.1.0.0/28", nil)
	f := &fixture{srv: s}
	f.eni1 = s.AddInstance("i-1", "subnet-a", "10.0.1.10")
	f.eni2 = s.AddInstance("i-2", "subnet-b", "10.0.2.10")
	f.clients(false)
	return f
}

func (f *fixture) clients(retryNow bool) {
	cfg := aws.Config{Region: f.srv.Region(),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	if retryNow {
		cfg.Retryer = func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		}
	}
	f.ec2 = ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(f.srv.EC2Endpoint()) })
	f.elb = elbv2.NewFromConfig(cfg, func(o *elbv2.Options) { o.BaseEndpoint = aws.String(f.srv.ELBv2Endpoint()) })
}

// code is the AWS error code of err, "" for nil.
func code(err error) string {
	var ae smithy.APIError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		return ae.ErrorCode()
	}
	return "not an API error: " + err.Error()
}

// step is one call in a sequence whose later steps depend on earlier ones.
type step struct {
	name     string
	run      func(ctx context.Context) error
	wantCode string
}

func runSteps(t *testing.T, steps []step) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if got := code(st.run(t.Context())); got != st.wantCode {
				t.Errorf("error code = %q, want %q", got, st.wantCode)
			}
		})
		if !ok {
			t.FailNow() // later steps build on this one
		}
	}
}

// check returns an error describing a difference, for use in steps.
func check(what string, got, want any) error {
	if d := cmp.Diff(want, got); d != "" {
		return errors.New(what + " (-want +got):\n" + d)
	}
	return nil
}

func TestFaultInjectionIsRetried(t *testing.T) {
	tests := []struct {
		name      string
		action    string
		code      string
		failures  int
		retryNow  bool
		call      func(context.Context, *fixture) error
		wantCalls int
		wantErr   string
	}{
		{name: "EC2 RequestLimitExceeded twice", action: "DescribeSubnets", code: "RequestLimitExceeded",
			failures: 2, retryNow: true, wantCalls: 3,
			call: func(ctx context.Context, f *fixture) error {
				_, err := f.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
				return err
			}},
		{name: "ELBv2 Throttling once, default retryer", action: "DescribeLoadBalancers", code: "Throttling",
			failures: 1, wantCalls: 2,
			call: func(ctx context.Context, f *fixture) error {
				_, err := f.elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
				return err
			}},
		{name: "ELBv2 Throttling beyond max attempts", action: "DescribeTargetGroups", code: "Throttling",
			failures: 5, retryNow: true, wantCalls: 3, wantErr: "Throttling",
			call: func(ctx context.Context, f *fixture) error {
				_, err := f.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
				return err
			}},
		{name: "non-retryable code fails at once", action: "AllocateAddress", code: "AddressLimitExceeded",
			failures: 1, retryNow: true, wantCalls: 1, wantErr: "AddressLimitExceeded",
			call: func(ctx context.Context, f *fixture) error {
				_, err := f.ec2.AllocateAddress(ctx, &ec2.AllocateAddressInput{})
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.clients(tt.retryNow)
			f.srv.FailNext(tt.action, tt.code, tt.failures)
			err := tt.call(t.Context(), f)
			if got := code(err); got != tt.wantErr {
				t.Fatalf("error code = %q, want %q", got, tt.wantErr)
			}
			if err != nil && retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary &&
				tt.code == "Throttling" {
				t.Errorf("the SDK does not classify %v as throttling", err)
			}
			if got := f.srv.Calls(tt.action); got != tt.wantCalls {
				t.Errorf("Calls(%s) = %d, want %d", tt.action, got, tt.wantCalls)
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		call     func(ctx context.Context) error
		wantCode string
		wantMsg  string
	}{
		{name: "EC2 action not implemented", wantCode: "InvalidAction", wantMsg: "DescribeVpcs",
			call: func(ctx context.Context) error {
				_, err := f.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
				return err
			}},
		{name: "ELBv2 action not implemented", wantCode: "InvalidAction", wantMsg: "DescribeRules",
			call: func(ctx context.Context) error {
				_, err := f.elb.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String("x")})
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if got := code(err); got != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %v, want code %q mentioning %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
	raw := []struct {
		url        string
		wantStatus int
		wantBody   string
	}{
		{f.srv.EC2Endpoint(), http.StatusForbidden, "<Code>MissingAuthenticationToken</Code>"},
		{f.srv.ELBv2Endpoint(), http.StatusForbidden, "<Code>MissingAuthenticationToken</Code>"},
		{strings.Replace(f.srv.EC2Endpoint(), "/ec2/", "/other/", 1), http.StatusNotFound, ""},
	}
	for _, tt := range raw {
		resp, err := http.PostForm(tt.url, url.Values{"Action": {"DescribeSubnets"}, "Version": {"2016-11-15"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("unsigned POST %s = %d %s, want %d with %s", tt.url, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
	}
}

// TestConcurrentUse is for the race detector.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	f.srv.SetAddressLimit(100)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.ec2.AllocateAddress(t.Context(), &ec2.AllocateAddressInput{}); err != nil {
				t.Error(err)
			}
			if _, err := f.elb.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{}); err != nil {
				t.Error(err)
			}
			_ = f.srv.Snapshot()
		})
	}
	wg.Wait()
	if got := len(f.srv.Snapshot().Addresses); got != 8 {
		t.Errorf("%d addresses, want 8", got)
	}
}

// TestMentions: a name sent in any parameter of a request is counted,
// failed requests included, and an absent one is not.
func TestMentions(t *testing.T) {
	f := newFixture(t)
	f.clients(true)
	_, err := f.elb.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{Names: []string{"a0123"}})
	if code(err) != "LoadBalancerNotFound" {
		t.Fatalf("describe a0123: %v", err)
	}
	for sub, want := range map[string]int{"a0123": 1, "a0124": 0, "DescribeLoadBalancers": 1} {
		if got := f.srv.Mentions(sub); got != want {
			t.Errorf("Mentions(%q) = %d, want %d", sub, got, want)
		}
	}
}
