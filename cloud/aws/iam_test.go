package aws_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// docPolicy is what docs/cloud.md's "IAM policy" section gives: the nlb
// mode policy, the statement to add for adopting upstream NLBs, the eip mode
// policy, and the statement to add for allocationIDs (its Resource is
// replaced by the configured allocations).
type docPolicy struct {
	nlb, adopt, eip []json.RawMessage
	list            map[string]any
}

func readDocPolicy(t testing.TB) docPolicy {
	t.Helper()
	raw, err := os.ReadFile("../../docs/cloud.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := awsdouble.MarkdownJSONBlocks(raw, "### IAM policy")
	if err != nil {
		t.Fatalf("docs/cloud.md: %v", err)
	}
	if len(blocks) != 4 {
		t.Fatalf("docs/cloud.md's IAM policy section has %d JSON blocks, want 4 (nlb, adoption, eip, allocationIDs)", len(blocks))
	}
	var out docPolicy
	for i, dst := range []*[]json.RawMessage{&out.nlb, nil, &out.eip} {
		if dst == nil {
			continue
		}
		var p struct{ Statement []json.RawMessage }
		if err := json.Unmarshal([]byte(blocks[i]), &p); err != nil {
			t.Fatalf("IAM policy block %d: %v", i+1, err)
		}
		*dst = p.Statement
	}
	out.adopt = []json.RawMessage{json.RawMessage(blocks[1])}
	if err := json.Unmarshal([]byte(blocks[3]), &out.list); err != nil {
		t.Fatalf("allocationIDs statement: %v", err)
	}
	return out
}

// policy assembles a policy document from statements.
func policy(t testing.TB, statements ...[]json.RawMessage) []byte {
	t.Helper()
	var all []json.RawMessage
	for _, s := range statements {
		all = append(all, s...)
	}
	b, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": all})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listStatement is the allocationIDs statement naming ids.
func (d docPolicy) listStatement(t testing.TB, srv *awsdouble.Server, ids []string) []json.RawMessage {
	t.Helper()
	if len(ids) == 0 {
		return nil
	}
	st := map[string]any{}
	for k, v := range d.list {
		st[k] = v
	}
	var arns []string
	for _, id := range ids {
		arns = append(arns, "arn:aws:ec2:"+srv.Region()+":"+awsdouble.AccountID+":elastic-ip/"+id)
	}
	st["Resource"] = arns
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return []json.RawMessage{b}
}

// setDocPolicy binds the backend's access key to both modes' documented
// policies (as docs/cloud.md says for Services of both modes), plus the
// allocationIDs statement when the configuration has a list.
func setDocPolicy(t testing.TB, srv *awsdouble.Server, cfg aws.Config) {
	t.Helper()
	d := readDocPolicy(t)
	if err := srv.SetPolicy("AKIDBERTH", policy(t, d.nlb, d.adopt, d.eip, d.listStatement(t, srv, cfg.EIP.AllocationIDs))); err != nil {
		t.Fatal(err)
	}
}

// without returns statements with the action removed from their Action.
func without(t testing.TB, statements []json.RawMessage, action string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for _, raw := range statements {
		var st map[string]any
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		var keep []any
		switch a := st["Action"].(type) {
		case string:
			if a != action {
				keep = append(keep, a)
			}
		case []any:
			for _, x := range a {
				if x != action {
					keep = append(keep, x)
				}
			}
		}
		if len(keep) == 0 {
			continue
		}
		st["Action"] = keep
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// nlbWorkout runs an nlb-mode Service through what the backend does to it:
// create with source ranges (security groups), targets following nodes, a
// NodePort change (a new target group, the old one swept), deletion.
func nlbWorkout(l *lab) error {
	nodesSG := l.srv.AddSecurityGroup("nodes", "vpc-1", map[string]string{"kubernetes.io/cluster/prod": "owned"})
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	n2 := l.addNode("n2", "i-2", "198.18.0.12")
	l.srv.SetInstanceSecurityGroups("i-1", nodesSG)
	l.srv.SetInstanceSecurityGroups("i-2", nodesSG)
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000501", func(s *v1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
	})
	if _, err := l.ensure(svc, []*v1.Node{n1, n2}); err != nil {
		return err
	}
	if err := l.update(svc, []*v1.Node{n1}); err != nil {
		return err
	}
	svc.Spec.Ports[0].NodePort = 30081
	if _, err := l.ensure(svc, []*v1.Node{n1, n2}); err != nil {
		return err
	}
	if err := l.delete(svc); err != nil {
		return err
	}
	if s := l.srv.Snapshot(); len(s.LoadBalancers)+len(s.TargetGroups)+len(s.Listeners) != 0 || len(s.SecurityGroups) != 1 {
		l.t.Errorf("after Delete: %d NLBs, %d groups, %d listeners, %d security groups (want the nodes' only)",
			len(s.LoadBalancers), len(s.TargetGroups), len(s.Listeners), len(s.SecurityGroups))
	}
	return nil
}

// eipWorkout runs an eip-mode Service through allocation, a move off a
// cordoned node, and deletion.
func eipWorkout(l *lab) error {
	l.addNode("n1", "i-1", "198.18.0.11")
	l.addNode("n2", "i-2", "198.18.0.12")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000502", eipMode)
	st, err := l.ensure(svc, l.kube.list())
	if err != nil {
		return err
	}
	owner, _ := l.mapping(st.Ingress[0].IP)
	l.kube.update(owner, func(n *v1.Node) { n.Spec.Unschedulable = true })
	if err := l.update(svc, l.kube.list()); err != nil {
		return err
	}
	if err := l.delete(svc); err != nil {
		return err
	}
	if s := l.srv.Snapshot(); len(s.Addresses) != 0 || secondaries(s) != 0 {
		l.t.Errorf("after Delete: %d Elastic IPs, %d secondary addresses", len(s.Addresses), secondaries(s))
	}
	return nil
}

// TestIAMPolicyPerMode runs each mode under its own documented policy
// alone, on an account without the ELB service-linked role yet, and checks
// that the policy is no wider than the docs claim by taking out actions
// the docs say each mode needs: the same workout must then be refused.
func TestIAMPolicyPerMode(t *testing.T) {
	d := readDocPolicy(t)
	cases := []struct {
		name       string
		statements []json.RawMessage
		workout    func(*lab) error
		denied     string // "" : must pass; else the action AWS must refuse
	}{
		{"nlb", d.nlb, nlbWorkout, ""},
		{"eip", d.eip, eipWorkout, ""},
		{"nlb without DescribeAddresses", without(t, d.nlb, "ec2:DescribeAddresses"), nlbWorkout, "ec2:DescribeAddresses"},
		{"nlb without the service-linked role", without(t, d.nlb, "iam:CreateServiceLinkedRole"), nlbWorkout, "iam:CreateServiceLinkedRole"},
		{"nlb without tagging on create", without(t, d.nlb, "ec2:CreateTags"), nlbWorkout, "ec2:CreateTags"},
		{"eip without ELB describes", without(t, d.eip, "elasticloadbalancing:DescribeLoadBalancers"), eipWorkout, "elasticloadbalancing:DescribeLoadBalancers"},
		{"eip under the nlb policy", d.nlb, eipWorkout, "ec2:AllocateAddress"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetServiceLinkedRole(false)
			if err := l.srv.SetPolicy("AKIDBERTH", policy(t, tc.statements)); err != nil {
				t.Fatal(err)
			}
			err := tc.workout(l)
			switch {
			case tc.denied == "" && err != nil:
				t.Fatalf("under the documented policy: %v", err)
			case tc.denied != "" && (err == nil || !strings.Contains(err.Error(), "not authorized to perform: "+tc.denied+" ")):
				t.Fatalf("got %v; want AWS to refuse %s", err, tc.denied)
			}
		})
	}
}

// TestAdoptionNeedsListenerStatement: without the documented adoption
// statement, an upstream NLB's untagged listeners cannot be changed, and
// the Service gets AWS's refusal rather than a duplicate NLB.
func TestAdoptionNeedsListenerStatement(t *testing.T) {
	d := readDocPolicy(t)
	l := newLab(t)
	if err := l.srv.SetPolicy("AKIDBERTH", policy(t, d.nlb)); err != nil {
		t.Fatal(err)
	}
	l.srv.SetProvisioningDescribes(0)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000205")
	makeUpstream(t, l, svc)
	_, err := l.ensure(svc, []*v1.Node{n1})
	if err == nil || !strings.Contains(err.Error(), "elasticloadbalancing:ModifyListener") {
		t.Fatalf("adoption without the statement: %v; want ModifyListener refused", err)
	}
	if n := len(l.srv.Snapshot().LoadBalancers); n != 1 {
		t.Errorf("%d load balancers; want the upstream one only", n)
	}
}
