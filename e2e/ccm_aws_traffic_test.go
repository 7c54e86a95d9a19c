package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/cloud/aws/awsdouble"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/netlab"
)

// TestCCMAWSEIPTraffic runs eip mode end to end with real traffic:
// berth-ccm (aws backend, against the AWS test double) maps a Service's
// Elastic IP to a secondary private address of one node, the speakers
// (forwarding only, no BGP or layer 2) forward that address to the
// NodePort, and a client reaches the NodePort stand-in through it; after a
// cordon the mapping moves and the client reaches the other node. The test
// plays the VPC: it routes the private address to the node whose instance
// holds it in the double, as AWS delivers an Elastic IP's traffic to the
// interface that holds the associated private address.
func TestCCMAWSEIPTraffic(t *testing.T) {
	requireFwdTools(t)
	lab := netlab.New(t)
	e := newEnvWith(t, controlplane.Options{BindAddress: lab.Gateway4})
	e.namespace(t, speakerNS, nil)
	srv := startAWSDouble(t)
	srv.AddSubnet("subnet-a", "vpc-1", "eu-west-1a", "198.19.8.0/24", map[string]string{"kubernetes.io/cluster/e2e": "owned"})
	srv.AddRouteTable("vpc-1", "igw-1", "subnet-a")
	bindDocPolicy(t, srv, "AKIDE2E", "e2e")
	sl := &speakerLab{t: t, lab: lab, e: e}
	byInstance := map[string]*labNode{}
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("node%d", i)
		h := lab.AddHost(name)
		instance := "i-" + name
		srv.AddInstance(instance, "subnet-a", fmt.Sprintf("198.19.8.%d", 10+i))
		srv.TagInstance(instance, map[string]string{"kubernetes.io/cluster/e2e": "owned"})
		if _, err := controlplane.CreateNodeWith(t.Context(), e.kube, controlplane.NodeConfig{
			Name: name, Addresses: []netip.Addr{h.IPv4, h.IPv6}, ProviderID: "aws:///eu-west-1a/" + instance,
		}); err != nil {
			t.Fatal(err)
		}
		n := &labNode{name: name, host: h}
		sl.nodes = append(sl.nodes, n)
		byInstance[instance] = n
	}
	client := lab.AddHost("client")
	fl := &fwdLab{speakerLab: sl, client: client}
	fl.listen(t, "tcp", npCloud)
	sl.startSpeakers("--forwarding=true", "--bgp=false", "--cleanup-on-exit")
	e.startCCMWith(t, fmt.Sprintf(`backend: aws
aws:
  region: %s
  clusterName: e2e
  defaultMode: eip
  endpoints:
    ec2: %s
    elbv2: %s
`, srv.Region(), srv.EC2Endpoint(), srv.ELBv2Endpoint()), []string{
		"AWS_ACCESS_KEY_ID=AKIDE2E", "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	})

	// mapped waits for the Elastic IP to be associated with a private
	// address other than not, and routes that address to its node.
	mapped := func(not string) (netip.Addr, *labNode) {
		t.Helper()
		s := waitAWS(t, srv, "the Elastic IP associated", func(s awsdouble.State) bool {
			return len(s.Addresses) == 1 && s.Addresses[0].AssociationID != "" && s.Addresses[0].PrivateIP != not
		})
		a := s.Addresses[0]
		n := byInstance[a.InstanceID]
		if n == nil {
			t.Fatalf("Elastic IP associated with unknown instance %q", a.InstanceID)
		}
		private := netip.MustParseAddr(a.PrivateIP)
		mustExec(t, client, "ip", "route", "replace", private.String()+"/32", "via", n.host.IPv4.String())
		return private, n
	}

	start := time.Now()
	e.service(t, "default", "web", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npCloud}}
	})
	private, owner := mapped("")
	a, _ := waitAnswer(t, fl.get, private, 80, npCloud, settle)
	if a.node != owner.name {
		t.Fatalf("answered by %s, want %s, which holds %s", a.node, owner.name, private)
	}
	if a.client.Addr() != client.IPv4 {
		t.Errorf("the NodePort saw %s, want the client's own address %s (no SNAT)", a.client.Addr(), client.IPv4)
	}
	t.Logf("client reached NodePort %d on %s through %s:80 %v after the Service was created", npCloud, owner.name, private, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if _, err := e.kube.CoreV1().Nodes().Patch(t.Context(), owner.name, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	private2, owner2 := mapped(private.String())
	a, _ = waitAnswer(t, fl.get, private2, 80, npCloud, settle)
	if owner2 == owner || a.node != owner2.name {
		t.Fatalf("after the cordon answered by %s through %s on %s; want another node", a.node, private2, owner2.name)
	}
	t.Logf("after cordoning %s the client reached %s through %s %v later", owner.name, owner2.name, private2, time.Since(start).Round(time.Millisecond))
	poll(t, settle, owner.name+" to stop forwarding "+private.String(), func() error {
		out, err := owner.host.Exec(t.Context(), "nft", "list", "table", "inet", "berth")
		if err == nil && strings.Contains(out, private.String()) {
			return fmt.Errorf("%s is still in its table", private)
		}
		return nil
	})

	if err := e.kube.CoreV1().Services("default").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNoAnswer(t, fl.get, private2, 80, settle)
	waitAWS(t, srv, "no Elastic IP or secondary address left", func(s awsdouble.State) bool {
		return len(s.Addresses) == 0 && !slices.ContainsFunc(s.NetworkInterfaces, func(ni awsdouble.NetworkInterface) bool { return len(ni.PrivateIPs) > 1 })
	})
}
