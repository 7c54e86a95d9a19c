package aws_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// ELB shows a new NLB or target group only after a while (here: after the
// next describe that would show it). Each case is a call made in that
// window, which once went wrong; the check is on what AWS holds after it
// and after the service controller's retries.
func TestELBEventualConsistency(t *testing.T) {
	for _, tc := range []struct {
		name string
		eips bool // Elastic IPs: a repeated create with other settings fails
		// run acts in the window after the Service's NLB was created.
		run   func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node)
		check func(t *testing.T, l *lab, s awsdouble.State)
	}{{
		// Once: a second CreateLoadBalancer with a new security group,
		// refused (DuplicateLoadBalancerName), the new group leaked.
		name: "second Ensure carries on with the NLB it made",
		eips: true,
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			before := l.srv.Calls("CreateLoadBalancer")
			if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err != nil {
				t.Fatalf("second Ensure = %v", err)
			}
			if got := l.srv.Calls("CreateLoadBalancer") - before; got != 0 {
				t.Errorf("second Ensure called CreateLoadBalancer %d times, want 0", got)
			}
		},
		check: func(t *testing.T, l *lab, s awsdouble.State) {
			if len(s.LoadBalancers) != 1 || len(s.SecurityGroups) != 1 {
				t.Errorf("%d NLBs, %d security groups; want 1 and 1", len(s.LoadBalancers), len(s.SecurityGroups))
			}
		},
	}, {
		// After a restart nothing is remembered: the security group is
		// found again by its tags, and the create meets the NLB, with
		// other settings here (a group added), and asks for a retry.
		name: "after a restart a duplicate name is a retry",
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			l.restart()
			annotate(up+"extra-security-groups", l.srv.AddSecurityGroup("office", "vpc-1", nil))(svc)
			_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1})
			if !errors.As(err, new(*api.RetryError)) || !strings.Contains(err.Error(), "does not show it yet") {
				t.Errorf("Ensure = %v; want a retry saying the NLB is not shown yet", err)
			}
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, _ *lab, s awsdouble.State) {
			if len(s.LoadBalancers) != 1 || len(s.SecurityGroups) != 2 || len(s.TargetGroups) != 2 {
				t.Errorf("%d NLBs, %d security groups, %d target groups; want 1, 2 (Berth's and the extra), 2",
					len(s.LoadBalancers), len(s.SecurityGroups), len(s.TargetGroups))
			}
		},
	}, {
		// Once: the old group, missing from the listing, was never
		// remembered for deletion, and stayed.
		name: "a port's old group is deleted though the listing missed it",
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			svc.Spec.Ports[0].NodePort = 30081
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, _ *lab, s awsdouble.State) {
			for _, g := range s.TargetGroups {
				if g.Port == 30080 {
					t.Errorf("the old group %s (NodePort 30080) is left", g.Name)
				}
			}
			if len(s.TargetGroups) != 2 {
				t.Errorf("%d target groups, want 2", len(s.TargetGroups))
			}
		},
	}, {
		// Once: Delete did not see the NLB, left it, and failed on its
		// security group (DependencyViolation).
		name: "Delete removes what it cannot see yet",
		run: func(t *testing.T, l *lab, svc *v1.Service, _ *v1.Node) {
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
		},
		check: checkNothingLeft,
	}, {
		// The same after a restart: the security group still in use
		// makes Delete come back once the NLB is shown.
		name: "Delete after a restart",
		run: func(t *testing.T, l *lab, svc *v1.Service, _ *v1.Node) {
			l.restart()
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
		},
		check: checkNothingLeft,
	}, {
		// Once: switching to eip mode left the NLB it did not see.
		name: "switching to eip removes the NLB",
		run: func(t *testing.T, l *lab, svc *v1.Service, _ *v1.Node) {
			eipMode(svc)
			if _, err := l.ensure(svc, l.kube.list()); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, _ *lab, s awsdouble.State) {
			if len(s.LoadBalancers)+len(s.TargetGroups)+len(s.SecurityGroups) != 0 {
				t.Errorf("after switching to eip: %d NLBs, %d groups, %d security groups",
					len(s.LoadBalancers), len(s.TargetGroups), len(s.SecurityGroups))
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetProvisioningDescribes(0)
			l.srv.SetELBVisibilityDelay(1)
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000601")
			if tc.eips {
				eips := []string{l.srv.AddElasticIP("198.51.100.10", nil), l.srv.AddElasticIP("198.51.100.11", nil)}
				annotate(up+"eip-allocations", eips[0]+","+eips[1])(svc)
			}
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
			tc.run(t, l, svc, n1)
			tc.check(t, l, l.srv.Snapshot())
		})
	}
}

func checkNothingLeft(t *testing.T, _ *lab, s awsdouble.State) {
	t.Helper()
	if len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Listeners)+len(s.SecurityGroups) != 0 {
		t.Errorf("left after Delete: %d NLBs, %d groups, %d listeners, %d security groups",
			len(s.LoadBalancers), len(s.TargetGroups), len(s.Listeners), len(s.SecurityGroups))
	}
}

// An NLB of the Service's name that is not Berth's and that ELB does not
// show yet is never taken: Berth's create meets it and asks for a retry,
// and once it is shown its tags make it a conflict. Nothing is added to
// it, and Delete leaves it and removes Berth's security group.
func TestELBForeignNLBNotShownYet(t *testing.T) {
	l := newLab(t)
	l.srv.SetELBVisibilityDelay(1)
	l.srv.SetSecurityGroupVisibilityDelay(0) // its retry would hide the first create's answer
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000602")
	if _, err := l.elb.CreateLoadBalancer(l.ctx, &elb.CreateLoadBalancerInput{
		Name: sdk.String(cloudprovider.DefaultLoadBalancerName(svc)), Type: elbtypes.LoadBalancerTypeEnumNetwork,
		Subnets: []string{"subnet-a", "subnet-b"}, Tags: []elbtypes.Tag{{Key: sdk.String("team"), Value: sdk.String("someone-else")}},
	}); err != nil {
		t.Fatal(err)
	}
	var retries int
	err := l.retry(func() error {
		_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1})
		if errors.As(err, new(*api.RetryError)) {
			retries++
		}
		return err
	})
	if !errors.As(err, new(*aws.ConflictError)) || retries == 0 {
		t.Fatalf("Ensure = %v after %d retries; want retries, then a ConflictError", err, retries)
	}
	s := l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 || len(s.LoadBalancers[0].Tags) != 1 || len(s.Listeners)+len(s.TargetGroups) != 0 {
		t.Errorf("the other NLB was changed or used: %+v", s)
	}
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	if s := l.srv.Snapshot(); len(s.LoadBalancers) != 1 || len(s.SecurityGroups) != 0 {
		t.Errorf("after Delete: %d NLBs (want the other's), %d security groups (want none)", len(s.LoadBalancers), len(s.SecurityGroups))
	}
}

// ELB shows new listeners, and new tags, only after a while too. Each case
// is a call made right after the Service's NLB was created, with listeners
// (elb) or tags (tags) shown that many describes late.
func TestELBListenerAndTagConsistency(t *testing.T) {
	for _, tc := range []struct {
		name      string
		elb, tags int
		run       func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node)
		check     func(t *testing.T, s awsdouble.State)
	}{{
		// Once: CreateListener again, refused (DuplicateListener).
		name: "a port's NodePort changes while its listener is not shown", elb: 2,
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			svc.Spec.Ports[0].NodePort = 30081
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, s awsdouble.State) {
			if len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
				t.Errorf("%d groups, %d listeners; want 2 and 2 (the old group deleted)", len(s.TargetGroups), len(s.Listeners))
			}
			for _, g := range s.TargetGroups {
				if g.Port == 30080 {
					t.Errorf("the old group %s is left", g.Name)
				}
			}
		},
	}, {
		// Once: the listener was not seen, so not deleted, and its group
		// could never go.
		name: "a port goes while its listener is not shown", elb: 2,
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			svc.Spec.Ports = svc.Spec.Ports[:1]
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, s awsdouble.State) {
			if len(s.TargetGroups) != 1 || len(s.Listeners) != 1 || s.Listeners[0].Port != 80 {
				t.Errorf("%d groups, listeners %+v; want 1 group and the listener on 80", len(s.TargetGroups), s.Listeners)
			}
		},
	}, {
		// Once: the NLB and its groups, shown without their tags, were
		// taken for another's (ConflictError).
		name: "tags not shown yet: the next Ensure", tags: 2,
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err != nil {
				t.Fatalf("second Ensure = %v", err)
			}
		},
		check: func(t *testing.T, s awsdouble.State) {
			if len(s.LoadBalancers) != 1 || len(s.TargetGroups) != 2 {
				t.Errorf("%d NLBs, %d groups; want 1 and 2", len(s.LoadBalancers), len(s.TargetGroups))
			}
		},
	}, {
		// After a restart an NLB shown with no tags at all is a retry
		// that says why, not a conflict; once they show, it is served.
		name: "tags not shown yet after a restart", tags: 2,
		run: func(t *testing.T, l *lab, svc *v1.Service, n1 *v1.Node) {
			l.restart()
			_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1})
			if !errors.As(err, new(*api.RetryError)) || !strings.Contains(err.Error(), "shows no tags (yet)") {
				t.Errorf("Ensure = %v; want a retry saying the NLB shows no tags yet", err)
			}
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, s awsdouble.State) {
			if len(s.LoadBalancers) != 1 || len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
				t.Errorf("%d NLBs, %d groups, %d listeners; want 1, 2, 2", len(s.LoadBalancers), len(s.TargetGroups), len(s.Listeners))
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetProvisioningDescribes(0)
			l.srv.SetELBVisibilityDelay(tc.elb)
			l.srv.SetELBTagVisibilityDelay(tc.tags)
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000603")
			// The security group shown late asks for a retry per describe
			// it is hidden from.
			if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
				t.Fatal(err)
			}
			tc.run(t, l, svc, n1)
			tc.check(t, l.srv.Snapshot())
		})
	}
}

// TestELBNewNLBRetriedSoon: while ELB does not show the NLB this process
// just made, its state is the "provisioning" CreateLoadBalancer gave, so
// the service controller is asked to come back in seconds, not after the
// 10 s a provisioning NLB waits. Before, a Service took 10 s per hidden
// describe to get its hostname.
func TestELBNewNLBRetriedSoon(t *testing.T) {
	l := newLab(t)
	l.srv.SetELBVisibilityDelay(3)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000604")
	var err error
	for range 10 {
		if _, err = l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err != nil && strings.Contains(err.Error(), "provisioning") {
			break
		}
	}
	var retry *api.RetryError
	if !errors.As(err, &retry) || retry.RetryAfter() > 2*time.Second {
		t.Fatalf("Ensure = %v; want a retry within 2 s while ELB does not show the new NLB", err)
	}
}

// A group that lost its listener a moment before berth-ccm restarted, and
// whose tags ELB does not show yet, is not known to be the Service's by
// anything but its tags (its name hashes a port that nothing recorded).
// Once, Get then reported nothing left, the service controller did not call
// Delete, and the group stayed. Get and Delete now wait for ELB to show
// the tags of Berth-named groups that show none (for up to madeFor).
func TestELBHiddenDetachedGroupAfterRestart(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000611")
	if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	// Two port changes in a row: the first one's group is new when the
	// second detaches it, and AWS holds it for a while; berth-ccm
	// restarts before it could delete it.
	svc.Spec.Ports[0].NodePort = 30081
	if _, err := l.ensure(svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	l.srv.SetInUseAfterDetach(2)
	svc.Spec.Ports[0].NodePort = 30082
	if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); !errors.As(err, new(*api.RetryError)) {
		t.Fatalf("Ensure = %v; want a retry while AWS holds the detached group", err)
	}
	var hidden string
	for _, g := range l.srv.Snapshot().TargetGroups {
		if g.Port == 30081 {
			hidden = g.ARN
		}
	}
	if hidden == "" {
		t.Fatal("the 30081 group is gone already; the case needs it held")
	}
	l.restart()
	// Its tags not shown yet, as a moment after its creation.
	l.srv.HideELBTags(hidden, 10)
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, l, l.srv.Snapshot())
}
