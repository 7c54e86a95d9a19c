package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
	"github.com/berthlb/berth/e2e/controlplane"
)

// awsNode registers an instance in the test double and its Node.
func (e *env) awsNode(t *testing.T, srv *awsdouble.Server, name, instance, privateIP string) {
	t.Helper()
	srv.AddInstance(instance, "subnet-a", privateIP)
	srv.TagInstance(instance, map[string]string{"kubernetes.io/cluster/e2e": "owned"})
	if _, err := controlplane.CreateNodeWith(t.Context(), e.kube, controlplane.NodeConfig{
		Name: name, ProviderID: "aws:///eu-west-1a/" + instance, Addresses: []netip.Addr{mustAddr(privateIP)},
	}); err != nil {
		t.Fatal(err)
	}
}

// readyOn makes the Service's one EndpointSlice list one ready endpoint
// on each of the nodes (no endpoint controller runs in this control plane).
func (e *env) readyOn(t *testing.T, ns, svc string, nodes ...string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-e2e", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("198.18.200.%d", i+1)}, NodeName: ptr.To(n),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	e.applySlice(t, es)
}

// waitAWS polls the test double's state until ok holds.
func waitAWS(t *testing.T, srv *awsdouble.Server, what string, ok func(awsdouble.State) bool) awsdouble.State {
	t.Helper()
	var s awsdouble.State
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		s = srv.Snapshot()
		return ok(s), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; AWS state %+v", what, err, s)
	}
	return s
}

func groupTargets(s awsdouble.State) [][]string {
	var out [][]string
	for _, tg := range s.TargetGroups {
		var ids []string
		for _, t := range tg.Targets {
			ids = append(ids, t.ID)
		}
		slices.Sort(ids)
		out = append(out, ids)
	}
	return out
}

// forwardedOn returns the node carrying the Service's forwarding
// annotation and the private address in it.
func (e *env) forwardedOn(t *testing.T, value string) (node, addr string) {
	t.Helper()
	nodes, err := e.kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for k, v := range n.Annotations {
			if a, ok := strings.CutPrefix(k, v1alpha1.NodeAnnotationForwardPrefix); ok && v == value {
				if node != "" {
					t.Errorf("Service %s is forwarded on %s and %s", value, node, n.Name)
				}
				node, addr = n.Name, a
			}
		}
	}
	return node, addr
}

// startAWSDouble starts the AWS test double as eventually consistent as
// the backend's unit tests have it: deregistered targets drain, a
// detached target group stays in use for a while, and new ELB and EC2
// resources and EC2 changes are shown late (seeded and logged;
// $BERTH_AWS_SEED repeats a run).
func startAWSDouble(t *testing.T) *awsdouble.Server {
	t.Helper()
	srv := awsdouble.Start(t)
	srv.SetDrainingDescribes(2)
	srv.SetInUseAfterDetach(1)
	srv.SetSeededVisibilityDelays(t)
	return srv
}

// startCCMOnAWS starts the AWS test double with public, private and
// internal subnets, the docs' IAM policy and nodes instances i-1..i-n
// (Nodes node-1..node-n), and berth-ccm with the aws backend against it
// with the extra flags.
func (e *env) startCCMOnAWS(t *testing.T, nodes int, args ...string) *awsdouble.Server {
	t.Helper()
	srv := startAWSDouble(t)
	srv.AddSubnet("subnet-a", "vpc-1", "eu-west-1a", "198.18.0.0/24", map[string]string{"kubernetes.io/cluster/e2e": "owned", "kubernetes.io/role/elb": "1"})
	srv.AddSubnet("subnet-b", "vpc-1", "eu-west-1b", "198.18.1.0/24", map[string]string{"kubernetes.io/cluster/e2e": "owned", "kubernetes.io/role/elb": "1"})
	srv.AddSubnet("subnet-i", "vpc-1", "eu-west-1a", "198.18.2.0/24", map[string]string{"kubernetes.io/cluster/e2e": "owned", "kubernetes.io/role/internal-elb": "1"})
	srv.AddRouteTable("vpc-1", "igw-1", "subnet-a", "subnet-b") // public; subnet-i private
	srv.SetSubnetIPv6("subnet-a", "2001:db8:0:1::/64")
	srv.SetSubnetIPv6("subnet-b", "2001:db8:0:2::/64")
	bindDocPolicy(t, srv, "AKIDE2E", "e2e")
	for i := 1; i <= nodes; i++ {
		e.awsNode(t, srv, fmt.Sprintf("node-%d", i), fmt.Sprintf("i-%d", i), fmt.Sprintf("198.18.0.%d", 10+i))
	}
	cloudConfig := fmt.Sprintf(`backend: aws
aws:
  region: %s
  clusterName: e2e
  maxAttempts: 5
  endpoints:
    ec2: %s
    elbv2: %s
`, srv.Region(), srv.EC2Endpoint(), srv.ELBv2Endpoint())
	e.startCCMWith(t, cloudConfig, []string{
		"AWS_ACCESS_KEY_ID=AKIDE2E", "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}, args...)
	return srv
}

// waitServicesGone waits until the Services are deleted, which a kept
// finalizer would prevent.
func (e *env) waitServicesGone(t *testing.T, ns string, names ...string) {
	t.Helper()
	for _, name := range names {
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("Service %s/%s still exists (finalizer kept): %v", ns, name, err)
		}
	}
}

// TestCCMAWS runs berth-ccm with the aws backend against the wire-level
// AWS test double (cloud/aws/awsdouble) through the real SDK: the upstream
// service controller gives an nlb-mode Service the NLB's DNS name and an
// eip-mode Service an Elastic IP; nodes joining and leaving change the
// targets; cordoning the node an Elastic IP is mapped to moves it; an
// IPv6-only Service gets an IPv6 target group of the nodes' IPv6
// addresses; deleting the Services removes every AWS resource Berth made.
// The double shows new resources and changes late (seeded, logged).
func TestCCMAWS(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	srv := e.startCCMOnAWS(t, 3)
	const ns = "default"

	t.Run("nlb: the NLB's DNS name in status, targets follow nodes", func(t *testing.T) {
		start := time.Now()
		e.service(t, ns, "web")
		s := waitAWS(t, srv, "an NLB", func(s awsdouble.State) bool { return len(s.LoadBalancers) == 1 })
		dns := s.LoadBalancers[0].DNSName
		e.waitService(t, ns, "web", "hostname "+dns, func(s *corev1.Service) bool {
			in := s.Status.LoadBalancer.Ingress
			return len(in) == 1 && in[0].Hostname == dns
		})
		t.Logf("NLB hostname in status %v after the Service was created (includes one provisioning retry)", time.Since(start).Round(time.Millisecond))
		waitAWS(t, srv, "targets i-1..i-3", func(s awsdouble.State) bool {
			return slices.EqualFunc(groupTargets(s), [][]string{{"i-1", "i-2", "i-3"}}, slices.Equal)
		})
		e.awsNode(t, srv, "node-4", "i-4", "198.18.0.14")
		waitAWS(t, srv, "node-4 to become a target", func(s awsdouble.State) bool {
			return slices.EqualFunc(groupTargets(s), [][]string{{"i-1", "i-2", "i-3", "i-4"}}, slices.Equal)
		})
		if err := e.kube.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAWS(t, srv, "node-1 to leave the targets", func(s awsdouble.State) bool {
			return slices.EqualFunc(groupTargets(s), [][]string{{"i-2", "i-3", "i-4"}}, slices.Equal)
		})
	})

	t.Run("eip: an Elastic IP in status, moved off a cordoned node", func(t *testing.T) {
		e.service(t, ns, "cheap", withAnnotation(v1alpha1.AnnotationAWSMode, "eip"))
		s := waitAWS(t, srv, "an associated Elastic IP", func(s awsdouble.State) bool {
			return len(s.Addresses) == 1 && s.Addresses[0].AssociationID != ""
		})
		public := s.Addresses[0].PublicIP
		e.waitIngress(t, ns, "cheap", public)
		var node, private string
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			node, private = e.forwardedOn(t, ns+"/cheap")
			return node != "", nil
		})
		if node == "" || private != s.Addresses[0].PrivateIP {
			t.Fatalf("forwarding annotation on %q for %q; want the node holding %s", node, private, s.Addresses[0].PrivateIP)
		}
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		start := time.Now()
		if _, err := e.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		moved := waitAWS(t, srv, "the Elastic IP to move", func(s awsdouble.State) bool {
			return len(s.Addresses) == 1 && s.Addresses[0].AssociationID != "" && s.Addresses[0].PrivateIP != private
		})
		tookToMove := time.Since(start)
		t.Logf("Elastic IP %s moved off cordoned %s in %v", public, node, tookToMove.Round(time.Millisecond))
		var node2 string
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			node2, private = e.forwardedOn(t, ns+"/cheap")
			return node2 != node && private == moved.Addresses[0].PrivateIP, nil
		})
		if node2 == node || private != moved.Addresses[0].PrivateIP {
			t.Errorf("forwarding annotation on %s for %s after the move; want another node, %s", node2, private, moved.Addresses[0].PrivateIP)
		}
		e.waitIngress(t, ns, "cheap", public)

		// Uncordoning does not bring it back: an Elastic IP moves only
		// when its node stops being eligible. An uncordoned node queues
		// nothing, so there is no event to wait for; the check holds over
		// a window of five times what the move on cordon took (3 s at
		// least), polled, so that a move back starting late is seen too.
		if _, err := e.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":false}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		holdsFor(t, max(3*time.Second, 5*tookToMove), "the Elastic IP stays after uncordoning "+node, func() error {
			if s := srv.Snapshot(); len(s.Addresses) != 1 || s.Addresses[0].PrivateIP != moved.Addresses[0].PrivateIP || s.Addresses[0].AssociationID != moved.Addresses[0].AssociationID {
				return fmt.Errorf("moved: %+v, was %+v", s.Addresses, moved.Addresses)
			}
			if n, _ := e.forwardedOn(t, ns+"/cheap"); n != node2 {
				return fmt.Errorf("forwarding annotation moved from %s to %q", node2, n)
			}
			return nil
		})
	})

	t.Run("eip with externalTrafficPolicy Local follows the ready endpoints", func(t *testing.T) {
		e.readyOn(t, ns, "local", "node-3")
		e.service(t, ns, "local", withAnnotation(v1alpha1.AnnotationAWSMode, "eip"), func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		waitForwarded := func(want string) {
			t.Helper()
			var node string
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				node, _ = e.forwardedOn(t, ns+"/local")
				return node == want, nil
			})
			if err != nil {
				t.Fatalf("local is forwarded on %q, want %s", node, want)
			}
		}
		waitForwarded("node-3")
		start := time.Now()
		e.readyOn(t, ns, "local", "node-4")
		waitForwarded("node-4")
		t.Logf("Elastic IP followed the endpoint to node-4 in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("upstream annotations: an internal NLB, source ranges in its security group; an unsupported annotation reported as Event and condition", func(t *testing.T) {
		const up = "service.beta.kubernetes.io/aws-load-balancer-"
		e.service(t, ns, "inner", withAnnotation(up+"internal", "true"), withAnnotation(up+"proxy-protocol", "*"),
			func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"} })
		lbOf := func(s awsdouble.State) *awsdouble.LoadBalancer {
			for i := range s.LoadBalancers {
				if s.LoadBalancers[i].Tags["kubernetes.io/service-name"] == ns+"/inner" {
					return &s.LoadBalancers[i]
				}
			}
			return nil
		}
		s := waitAWS(t, srv, "the internal NLB", func(s awsdouble.State) bool { return lbOf(s) != nil })
		if lb := lbOf(s); lb.Scheme != "internal" || !slices.Equal(lb.Subnets, []string{"subnet-i"}) || len(lb.SecurityGroups) != 1 {
			t.Errorf("NLB %+v: want internal, in the internal subnet, with its security group", lb)
		}
		sg := lbOf(s).SecurityGroups[0]
		waitAWS(t, srv, "the NLB's group to admit only 192.0.2.0/24 on port 80", func(s awsdouble.State) bool {
			for _, g := range s.SecurityGroups {
				if g.ID == sg {
					return slices.Equal(g.Ingress, []awsdouble.Rule{{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: "192.0.2.0/24"}})
				}
			}
			return false
		})
		e.waitService(t, ns, "inner", "the UnsupportedAnnotations condition", func(s *corev1.Service) bool {
			for _, c := range s.Status.Conditions {
				if c.Type == "berth.dev/UnsupportedAnnotations" && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, up+"proxy-protocol") {
					return true
				}
			}
			return false
		})
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			evs, err := e.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=inner"})
			if err != nil {
				return false, nil
			}
			for _, ev := range evs.Items {
				if ev.Type == corev1.EventTypeWarning && ev.Reason == "UnsupportedAnnotation" && strings.Contains(ev.Message, up+"proxy-protocol") {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Errorf("no Warning Event naming the unsupported annotation: %v", err)
		}
		if err := e.kube.CoreV1().Services(ns).Delete(ctx, "inner", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAWS(t, srv, "the internal NLB and its group to go", func(s awsdouble.State) bool {
			return lbOf(s) == nil && !slices.ContainsFunc(s.SecurityGroups, func(g awsdouble.SecurityGroup) bool { return g.ID == sg })
		})
	})

	t.Run("nlb for an IPv6-only Service: an IPv6 target group of the nodes' IPv6 addresses", func(t *testing.T) {
		srv.AddInstance("i-6", "subnet-a", "198.18.0.16")
		srv.TagInstance("i-6", map[string]string{"kubernetes.io/cluster/e2e": "owned"})
		srv.AddInstanceIPv6("i-6", "2001:db8:0:1::16", false)
		if _, err := controlplane.CreateNodeWith(ctx, e.kube, controlplane.NodeConfig{
			Name: "node-6", ProviderID: "aws:///eu-west-1a/i-6", Addresses: []netip.Addr{mustAddr("198.18.0.16"), mustAddr("2001:db8:0:1::16")},
		}); err != nil {
			t.Fatal(err)
		}
		e.service(t, ns, "six", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
		s := waitAWS(t, srv, "a dualstack NLB whose IPv6 target group holds node-6's IPv6 address", func(s awsdouble.State) bool {
			for _, tg := range s.TargetGroups {
				if tg.TargetType == "ip" && tg.IPAddressType == "ipv6" && len(tg.Targets) == 1 && tg.Targets[0].ID == "2001:db8:0:1::16" {
					return slices.ContainsFunc(s.LoadBalancers, func(lb awsdouble.LoadBalancer) bool { return lb.IPAddressType == "dualstack" })
				}
			}
			return false
		})
		var dns string
		for _, lb := range s.LoadBalancers {
			if lb.IPAddressType == "dualstack" {
				dns = lb.DNSName
			}
		}
		e.waitService(t, ns, "six", "hostname "+dns, func(s *corev1.Service) bool {
			in := s.Status.LoadBalancer.Ingress
			return len(in) == 1 && in[0].Hostname == dns
		})
		if err := e.kube.CoreV1().Services(ns).Delete(ctx, "six", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitServicesGone(t, ns, "six")
		waitAWS(t, srv, "the IPv6 NLB and its groups to go", func(s awsdouble.State) bool {
			return !slices.ContainsFunc(s.TargetGroups, func(tg awsdouble.TargetGroup) bool { return tg.IPAddressType == "ipv6" }) &&
				!slices.ContainsFunc(s.LoadBalancers, func(lb awsdouble.LoadBalancer) bool { return lb.IPAddressType == "dualstack" })
		})
	})

	t.Run("deleting the Services removes every AWS resource", func(t *testing.T) {
		for _, name := range []string{"web", "cheap", "local"} {
			if err := e.kube.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitAWS(t, srv, "no AWS resources left", func(s awsdouble.State) bool {
			n := len(s.LoadBalancers) + len(s.TargetGroups) + len(s.Listeners) + len(s.Addresses) + len(s.SecurityGroups)
			for _, ni := range s.NetworkInterfaces {
				n += len(ni.PrivateIPs) - 1
			}
			return n == 0
		})
		e.waitServicesGone(t, ns, "web", "cheap", "local")
		for _, svc := range []string{"cheap", "local"} {
			if node, _ := e.forwardedOn(t, ns+"/"+svc); node != "" {
				t.Errorf("forwarding annotation of %s left on %s", svc, node)
			}
		}
	})
}

// bindDocPolicy makes the double refuse berth-ccm (signing with key) any
// call that docs/cloud.md's IAM policies for both modes and for adoption do
// not allow, with the cluster's name in place of the docs' "prod".
func bindDocPolicy(t *testing.T, srv *awsdouble.Server, key, cluster string) {
	t.Helper()
	raw, err := os.ReadFile("../docs/cloud.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := awsdouble.MarkdownJSONBlocks(raw, "### IAM policy")
	if err != nil || len(blocks) < 3 {
		t.Fatalf("docs/cloud.md's IAM policies: %d blocks, %v", len(blocks), err)
	}
	statements := []json.RawMessage{json.RawMessage(blocks[1])}
	for _, b := range []string{blocks[0], blocks[2]} {
		var p struct{ Statement []json.RawMessage }
		if err := json.Unmarshal([]byte(b), &p); err != nil {
			t.Fatal(err)
		}
		statements = append(statements, p.Statement...)
	}
	doc, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetPolicy(key, []byte(strings.ReplaceAll(string(doc), "prod", cluster))); err != nil {
		t.Fatal(err)
	}
}
