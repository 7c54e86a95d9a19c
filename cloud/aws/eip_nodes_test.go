package aws_test

import (
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An Elastic IP is never mapped to a node in a private subnet (it would not
// be reachable) or to a node whose primary interface's secondary addresses
// another agent manages (the VPC CNI hands them to pods); several Elastic
// IPs of Berth's own on one interface are fine.
func TestEIPNodeChecks(t *testing.T) {
	l := newLab(t)
	put := func(name, instance, subnet, ip string) string {
		eni := l.srv.AddInstance(instance, subnet, ip)
		l.srv.TagInstance(instance, map[string]string{"kubernetes.io/cluster/prod": "owned"})
		l.kube.put(&v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance},
			Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
		})
		return eni
	}
	put("private", "i-p", "subnet-i", "198.18.2.11")
	cni := put("cni", "i-c", "subnet-a", "198.18.0.12")
	if _, err := l.ec2.AssignPrivateIpAddresses(l.ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: sdk.String(cni), SecondaryPrivateIpAddressCount: sdk.Int32(3),
	}); err != nil {
		t.Fatal(err)
	}

	// Only unsuitable nodes: the error names each and why.
	_, err := l.ensure(service("a", "0c4b7f3e-aaaa-bbbb-cccc-000000000070", eipMode), l.kube.list())
	for _, want := range []string{"node private: its subnet subnet-i has no route to an internet gateway", "node cni: its primary interface " + cni + " holds secondary addresses Berth did not assign"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Ensure with only unsuitable nodes: %v; want it to say %q", err, want)
		}
	}
	if n := secondaries(l.srv.Snapshot()); n != 3 {
		t.Errorf("%d secondary addresses, want the CNI's 3 only", n)
	}

	// A suitable node takes every Elastic IP, Berth's own secondary
	// addresses on it not counting as another agent's.
	put("good", "i-g", "subnet-a", "198.18.0.13")
	for i, uid := range []string{"0c4b7f3e-aaaa-bbbb-cccc-000000000070", "0c4b7f3e-aaaa-bbbb-cccc-000000000071", "0c4b7f3e-aaaa-bbbb-cccc-000000000072"} {
		st, err := l.ensure(service(string(rune('a'+i)), uid, eipMode), l.kube.list())
		if err != nil {
			t.Fatal(err)
		}
		if node, _ := l.mapping(st.Ingress[0].IP); node != "good" {
			t.Errorf("Elastic IP %d mapped to %s, want the only suitable node", i, node)
		}
	}
}

// An instance type's address limit per interface (a t3.micro's interface
// holds its primary and one secondary address) bounds how many Elastic IPs
// its node carries; the next one goes to the next node.
func TestEIPInstanceTypeLimits(t *testing.T) {
	l := newLab(t)
	l.addNode("small", "i-s", "198.18.0.11")
	l.addNode("large", "i-l", "198.18.0.12")
	l.srv.SetInstanceType("i-s", "t3.micro")
	l.srv.SetInstanceType("i-l", "m5.large")
	onSmall := 0
	for i := range 4 {
		st, err := l.ensure(service(string(rune('a'+i)), "0c4b7f3e-aaaa-bbbb-cccc-00000000008"+string(rune('0'+i)), eipMode), l.kube.list())
		if err != nil {
			t.Fatal(err)
		}
		if node, _ := l.mapping(st.Ingress[0].IP); node == "small" {
			onSmall++
		}
	}
	if onSmall != 1 {
		t.Errorf("%d Elastic IPs on the t3.micro node, want exactly 1 (its limit)", onSmall)
	}
}
